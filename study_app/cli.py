"""`study-app` command line (filled in by the study issue)."""
import argparse


def main(argv=None):
    parser = argparse.ArgumentParser(prog="study-app", description=__doc__)
    parser.parse_args(argv)
    parser.print_help()
    return 0
