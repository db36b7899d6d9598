"""Run a benchmark: `python -m bench fid|metrics|intervals|copying|ppl|gan|study|gpu|all [options]`.

Each benchmark prints a table of figures next to the reference tool run on the same input.
"""
import importlib
import sys

BENCHMARKS = {
    "fid": "bench.fid",          # evalkit fid vs clean-fid: img/s, FID difference, peak memory, cached re-run
    "metrics": "bench.metrics",  # P/R/D/C vs prdc, full metrics vs FID alone, sweep vs separate clean-fid runs
    "intervals": "bench.intervals",  # cost of FID∞ and the paired ΔFID bootstrap relative to FID alone
    "copying": "bench.copying",  # C_T power and false alarms by simulation; calibrated copy check on fresh faces
    "gan": "bench.gan",          # training throughput for both discriminators
    "study": "bench.study",      # concurrent simulated participants through the storage layer
    "ppl": "bench.ppl",          # PPL paths/s at 32/64 px, evalkit calibrate wall time (CPU)
    "gpu": "bench.gpu",          # the one GPU check: cuda tests, 256 px s/kimg vs SG2ADA, 10k FID vs clean-fid
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in (*BENCHMARKS, "all"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    names = [n for n in BENCHMARKS if n != "gpu"] if argv[0] == "all" else [argv[0]]   # gpu: on a GPU only
    status = 0
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        status |= module.main(argv[1:]) or 0
    return status


if __name__ == "__main__":
    sys.exit(main())
