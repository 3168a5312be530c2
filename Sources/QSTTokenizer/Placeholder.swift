// Placeholder: QSTTokenizer sources land here.
