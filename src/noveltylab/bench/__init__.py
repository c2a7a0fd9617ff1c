"""Benchmark runner, result files and the RESULTS.md report."""
from .report import paper_numbers, write_report
from .runner import evaluate_split, run_benchmark, write_record

__all__ = ["evaluate_split", "paper_numbers", "run_benchmark", "write_record", "write_report"]
