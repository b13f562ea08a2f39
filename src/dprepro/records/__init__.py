"""Result records: the JSON files a run, an audit or a sweep leaves (in `runs/`, or pinned in the
project's `results/`), and what is made from them.

- `environment`: git state, packages, CPU and arithmetic path of the machine;
- `write`: the result file's schema version and summaries (written through files.write_json);
- `read`: a result file read back with every field checked, its spec typed;
- `result`: the typed record (Result, SeedOutcome, EpsilonBlock with its value of record, Pinned);
- `compare`: a fresh result against a pinned one and the published values;
- `frontier`: a sweep's privacy-utility table and figure;
- `report`: results/README.md and its figures from the pinned results.
"""
