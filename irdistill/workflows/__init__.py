"""Orchestration: the jobs that put the components together.

- :mod:`irdistill.workflows.pipeline`: ``irdistill run``, the whole chain from one recipe
  (candidates, teacher scores, student, index and evaluation, fidelity), resumable stage by stage.
- :mod:`irdistill.workflows.training`: a bi-encoder student from teacher scores, through the
  sentence-transformers trainer (losses and samplers by registry name).
- :mod:`irdistill.workflows.scoring`: a teacher over candidate lists into a resumable score store
  (sharded under ``torchrun``, merged by rank 0).
- :mod:`irdistill.workflows.indexing`: a compressed index (Distill-VQ, IVF-PQ, PQ, sparse) of a
  corpus, saved as a folder, optionally evaluated.
- :mod:`irdistill.workflows.teacher_training`: fine-tune a cross-encoder teacher on judgements.

Components (data, encoding, indexes, retrieval, teachers, scores, losses, samplers, students,
evaluation) import only downward and never from here; the CLI calls workflows.
"""
