"""Operations: plain async functions taking a client first and returning typed results.

They never print; the CLI and the dashboard render what they return.
"""
