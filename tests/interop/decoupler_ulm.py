"""decoupler's ULM on fold changes and gene sets written by tests/enrichment.rs.

    python3 tests/interop/decoupler_ulm.py VALUES.tsv NET.tsv OUT.tsv

VALUES.tsv: `gene<TAB>value` (header line), the universe. NET.tsv: `source<TAB>target<TAB>weight`
(header line). OUT.tsv gets `source<TAB>score<TAB>padj` for every set decoupler scores
(tmin = 5, as refcast): the ULM t-value and the p-value as decoupler 2 returns it, adjusted by
Benjamini-Hochberg over all the sets scored. Exit status 3 when decoupler cannot be imported.
"""
import sys

try:
    import decoupler as dc
except ImportError as e:
    print(f"decoupler is not installed ({e}); see tests/requirements-decoupler.txt", file=sys.stderr)
    sys.exit(3)
import pandas as pd

values, net, out = sys.argv[1:4]
v = pd.read_csv(values, sep="\t", index_col=0)
mat = pd.DataFrame([v["value"].to_numpy()], index=["prediction"], columns=v.index)
net = pd.read_csv(net, sep="\t", dtype={"source": str, "target": str, "weight": float})
# empty=False: a gene whose fold change is exactly 0 stays in the universe, as in refcast.
es, pv = dc.mt.ulm(data=mat, net=net, tmin=5, empty=False)
pd.DataFrame({"source": es.columns, "score": es.iloc[0].to_numpy(), "padj": pv.iloc[0].to_numpy()}).to_csv(
    out, sep="\t", index=False, float_format="%.17g")
print(f"decoupler {dc.__version__}: ULM of {es.shape[1]} sets over {mat.shape[1]} genes", file=sys.stderr)
