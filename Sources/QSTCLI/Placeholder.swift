// Placeholder: QSTCLI sources land here.
