"""The live dashboard (Textual): ``echoes-ops dashboard``.

:func:`echoes_ops.tui.app.create_app` builds it for the CLI and the tests; importing this
package does not import Textual.
"""
