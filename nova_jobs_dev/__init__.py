"""Beside the runtime, never imported by it: the local stack (`nova-jobs dev`), the demo data
set (`nova-jobs load-demo`) and the benchmarks (`make bench`). Its dependencies are the `local`
extra (`pip install -e '.[dev]'` includes it); the image installs `nova_jobs` alone."""
