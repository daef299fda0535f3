"""One module per panel: a pure ``render``-style function (testable without a terminal)
and the widget that shows it."""
