"""Expand --input arguments (files, folders searched recursively, text or Parquet manifests of URIs)
into a sorted, de-duplicated list of URIs. Local paths become absolute; other URIs go through fsspec."""
from __future__ import annotations

import os

MANIFEST_TEXT = (".txt", ".list", ".csv", ".tsv")


def _is_uri(s: str) -> bool:
    return "://" in s and not s.startswith("file://")


def _read_manifest(path: str) -> list[str]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        col = next((c for c in ("uri", "path", "url") if c in t.column_names), None)
        if col is None:
            raise ValueError(f"{path}: a Parquet manifest needs a 'uri' (or 'path'/'url') column")
        items = [u for u in t.column(col).to_pylist() if u]
    else:
        with open(path, encoding="utf-8") as fh:
            items = []
            for line in fh:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if path.endswith((".csv", ".tsv")):
                    line = line.split("\t" if path.endswith(".tsv") else ",")[0].strip()
                    if line in ("uri", "path", "url"):
                        continue
                items.append(line)
    base = os.path.dirname(os.path.abspath(path))
    return [u if _is_uri(u) or os.path.isabs(u) else os.path.join(base, u) for u in items]


def expand_inputs(inputs: list[str], extensions: list[str]) -> list[str]:
    exts = tuple(e.lower() for e in extensions)
    out: list[str] = []
    for item in inputs:
        if _is_uri(item):
            import fsspec

            fs, _, paths = fsspec.get_fs_token_paths(item)
            if fs.isdir(paths[0]):
                proto = item.split("://", 1)[0]
                out += [f"{proto}://{p}" for p in fs.find(paths[0]) if p.lower().endswith(exts)]
            else:
                out.append(item)
            continue
        path = os.path.abspath(item[len("file://"):] if item.startswith("file://") else item)
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for f in sorted(files):
                    if f.lower().endswith(exts) and not f.startswith("."):
                        out.append(os.path.join(root, f))
        elif path.lower().endswith(MANIFEST_TEXT + (".parquet",)) and os.path.isfile(path):
            out += _read_manifest(path)
        else:
            out.append(path)  # missing files are kept: they become 'not_found' rejects, never silent drops
    seen, uniq = set(), []
    for u in out:
        if u not in seen:
            seen.add(u)
            uniq.append(u)
    return sorted(uniq)
