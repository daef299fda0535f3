"""The live dashboard (Textual). Not built yet."""
