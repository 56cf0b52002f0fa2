"""The drawing board: a local web page to paint labels and colour strokes and generate
(``pyfill board``; see docs/board.md)."""
