"""The baseline for benchmarks/export_year.py: the obvious script a user would write.

    python benchmarks/pandas_export.py FOLDER OUT.parquet

pandas ``read_excel`` on each workbook of FOLDER (header on row 3, under Alma's title rows),
the file's name as a column, ``concat``, ``to_parquet``. Prints the number of rows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def main(folder: str, out: str) -> int:
    frames = []
    for path in sorted(Path(folder).glob("*.xlsx")):
        df = pd.read_excel(path, header=2)
        df["source_file"] = path.name
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    table.to_parquet(out)
    print(len(table))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
