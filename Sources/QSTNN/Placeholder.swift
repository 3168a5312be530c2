// Placeholder: QSTNN sources land here.
