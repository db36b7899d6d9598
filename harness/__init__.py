"""The orchestration on top of the three packages: what ties `gan`, `evalkit` and `study_app`
together. `harness demo` runs the whole job end to end (`demo`); `evalkit report --study` adds a
human study's results to a checkpoint report (`study_section`).

The installed `evalkit` command is evalkit's own CLI with these cross-package commands added
(`harness.cli.evalkit_main`), so that `evalkit` itself never imports `study_app`.
"""
