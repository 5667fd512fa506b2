#!/usr/bin/env python3
"""Writes the sample files of tests/formats.rs from the bundled example samples, so that each
format holds the same expression as a plain counts table (run from anywhere; standard library
only; the output is deterministic: gzip with mtime 0, a fixed random seed).

From examples/airway_N61311_untreated.tsv (airway smooth muscle, untreated; Ensembl ids, counts):
  airway.tsv.gz            the counts file, gzip-compressed
  airway_tpm.tsv.gz        TPM with a `tpm` header (gene lengths are not bundled: all genes are
                           given the same length, so TPM equals CPM here)
  airway_log2cpm.tsv       log2(1 + CPM) under a header that does not name the kind (the base is
                           told from the values)
  airway_log10cpm.tsv.gz   log10(1 + CPM), gzip-compressed, header naming no kind
  airway_featurecounts.txt.gz  featureCounts layout (its comment line, Geneid, Chr, Start, End,
                           Strand, Length, one column named by a BAM path); the annotation
                           columns hold placeholders, which refcast skips
(The tools' tables are gzip-compressed to keep the repository small, as users often keep them.)
  salmon/N61311/quant.genes.sf.gz   Salmon gene-level layout, NumReads = the counts
  kallisto/N61311/abundance.tsv.gz  kallisto layout (gene-level ids), est_counts = the counts
From examples/kang_cd14_mono_ctrl.tsv (PBMC CD14 monocytes, control; a pseudobulk of cells):
  kang_10x/                a 10x Genomics matrix directory (matrix.mtx.gz, features.tsv.gz,
                           barcodes.tsv.gz): each gene's count split over 6 cells at random,
                           plus one Antibody Capture feature, so that summing the cells gives the
                           original counts back
  kang_groups.tsv          barcode -> group table putting the 6 cells in groups a and b
"""

import gzip
import math
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))


def read_counts(path):
    genes, counts = [], []
    with open(os.path.join(ROOT, path)) as f:
        next(f)
        for line in f:
            g, c = line.rstrip("\n").split("\t")
            genes.append(g)
            counts.append(int(c))
    return genes, counts


def write(name, text, gz=False):
    path = os.path.join(HERE, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = text.encode()
    with open(path, "wb") as f:
        f.write(gzip.compress(data, mtime=0) if gz else data)


def table(header, genes, values, fmt):
    return header + "\n" + "".join(f"{g}\t{fmt(v)}\n" for g, v in zip(genes, values))


def main():
    genes, counts = read_counts("examples/airway_N61311_untreated.tsv")
    total = sum(counts)
    cpm = [c / total * 1e6 for c in counts]
    with open(os.path.join(ROOT, "examples/airway_N61311_untreated.tsv")) as f:
        write("airway.tsv.gz", f.read(), gz=True)
    write("airway_tpm.tsv.gz", table("gene\ttpm", genes, cpm, lambda v: f"{v:.6g}"), gz=True)
    write("airway_log2cpm.tsv", table("gene\tN61311", genes, cpm, lambda v: f"{math.log2(1 + v):.4f}"))
    write("airway_log10cpm.tsv.gz", table("gene\tN61311", genes, cpm, lambda v: f"{math.log10(1 + v):.6f}"), gz=True)
    fc = ['# Program:featureCounts v2.0.6; Command:"featureCounts" "-a" "genes.gtf" "-o" "counts.txt" "/data/bam/N61311.bam"',
          "Geneid\tChr\tStart\tEnd\tStrand\tLength\t/data/bam/N61311.bam"]
    fc += [f"{g}\tchrUn\t1\t1000\t+\t1000\t{c}" for g, c in zip(genes, counts)]
    write("airway_featurecounts.txt.gz", "\n".join(fc) + "\n", gz=True)
    sf = ["Name\tLength\tEffectiveLength\tTPM\tNumReads"]
    sf += [f"{g}\t1000\t850.000\t{v:.6f}\t{c:.3f}" for g, v, c in zip(genes, cpm, counts)]
    write("salmon/N61311/quant.genes.sf.gz", "\n".join(sf) + "\n", gz=True)
    ab = ["target_id\tlength\teff_length\test_counts\ttpm"]
    ab += [f"{g}\t1000\t850\t{c}\t{v:.6g}" for g, v, c in zip(genes, cpm, counts)]
    write("kallisto/N61311/abundance.tsv.gz", "\n".join(ab) + "\n", gz=True)

    genes, counts = read_counts("examples/kang_cd14_mono_ctrl.tsv")
    rng = random.Random(16)
    cells = 6
    barcodes = [f"{''.join(rng.choice('ACGT') for _ in range(16))}-1" for _ in range(cells)]
    entries = []  # (row, col, value), 1-based, grouped by column as Cell Ranger writes them
    per_cell = [[] for _ in range(cells)]
    for row, c in enumerate(counts, start=1):
        split = [0] * cells
        for _ in range(min(c, 200)):
            split[rng.randrange(cells)] += 1
        # The rest (large counts) in proportion, so the sum is exact.
        rest = c - sum(split)
        split[rng.randrange(cells)] += rest
        for col, v in enumerate(split, start=1):
            if v:
                per_cell[col - 1].append((row, col, v))
    antibody = len(genes) + 1
    for col in range(1, cells + 1):
        per_cell[col - 1].append((antibody, col, 50 * col))
        entries += per_cell[col - 1]
    mtx = ["%%MatrixMarket matrix coordinate integer general",
           '%metadata_json: {"software_version": "made by tests/data/formats/make.py", "format_version": 2}',
           f"{len(genes) + 1} {cells} {len(entries)}"]
    mtx += [f"{r} {c} {v}" for r, c, v in entries]
    write("kang_10x/matrix.mtx.gz", "\n".join(mtx) + "\n", gz=True)
    features = "".join(f"{g}\t{g}\tGene Expression\n" for g in genes) + "CD14_TotalSeqB\tCD14\tAntibody Capture\n"
    write("kang_10x/features.tsv.gz", features, gz=True)
    write("kang_10x/barcodes.tsv.gz", "".join(b + "\n" for b in barcodes), gz=True)
    write("kang_groups.tsv", "barcode\tgroup\n" + "".join(f"{b}\t{'a' if i % 2 == 0 else 'b'}\n" for i, b in enumerate(barcodes)))


if __name__ == "__main__":
    main()
