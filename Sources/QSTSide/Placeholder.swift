// Placeholder: QSTSide sources land here.
