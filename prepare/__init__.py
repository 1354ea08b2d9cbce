"""Phase-1 data pipeline: ingest -> filter -> dedup -> decontaminate -> tokenizer -> pack.

Each step is a small module that also runs alone (`python -m prepare.<step> --help`);
`python -m prepare.phase1` runs them all. See README "Data formats" for what flows between them.
"""
