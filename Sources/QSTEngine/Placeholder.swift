// Placeholder: QSTEngine sources land here.
