"""The console's core: stream records, the network session and the trio bridge.
Plain Python: nothing here imports Textual, so it can be tested without a screen."""
