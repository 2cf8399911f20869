#!/usr/bin/env python3
"""Replaces one benchmark script's block of docs/BENCHMARKS.md, keeping the rest.

Usage: python3 scripts/replace-block.py NAME BLOCK_FILE
The block file holds the whole block, from <!-- NAME:start --> to <!-- NAME:end -->;
a block not yet in the document is appended.
"""
import pathlib
import re
import sys

name, block_file = sys.argv[1], sys.argv[2]
doc = pathlib.Path("docs/BENCHMARKS.md")
block = pathlib.Path(block_file).read_text().strip()
text = doc.read_text() if doc.exists() else "# Benchmarks\n"
pat = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
text = pat.sub(lambda _: block, text) if pat.search(text) else text.rstrip() + "\n\n" + block + "\n"
doc.write_text(text)
