"""`gan` command line (filled in by the gan issue)."""
import argparse


def main(argv=None):
    parser = argparse.ArgumentParser(prog="gan", description=__doc__)
    parser.parse_args(argv)
    parser.print_help()
    return 0
