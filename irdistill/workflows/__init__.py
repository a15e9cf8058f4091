"""Orchestration: the jobs that put the components together.

- :mod:`irdistill.workflows.scoring`: a teacher over candidate lists into a resumable score store.

Components (data, encoding, indexes, retrieval, teachers, scores, losses, samplers, students,
evaluation) import only downward and never from here; the CLI calls workflows.
"""
