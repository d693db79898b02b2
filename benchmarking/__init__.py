"""Throughput and latency measurements behind `benchmark.py`.

=================  ======================================================================
module             what it measures or does
=================  ======================================================================
``training``       one (workers, batch) training run through ``./runner``, read from the
                   run's ``log.jsonl``
``inference``      one batch size of hybridized forward passes (a detector's with its
                   post-processing), in this process
``loaders``        the data pipelines alone, side by side, and the JPEG decode ceiling
``detection_``     the SSD training data path alone: the DALI pipeline with the training
``loaders``        step's anchor targets against gluoncv's SSD data path
``mask_rcnn_``     one batch size of Mask R-CNN inference, detection and mask head, with
``inference``      every detection's mask pasted into its image
``mask_rcnn_``     the Mask R-CNN training data path alone: the DALI pipeline with the
``loaders``        polygon rows and RPN targets against gluoncv's data path
``mask_rcnn_``     the project's Mask R-CNN against gluoncv's, trained and run side by side
``peer``
``gluoncv_``       gluoncv's Mask R-CNN as its train_mask_rcnn.py trains it and its
``mask_rcnn``      ``validate`` runs it (the peer of the two above)
``sweep``          loops over the cases, prints progress, records what failed and goes on
``stats``          the arithmetic: percentiles, images/s, epoch weighting, scaling
``report``         the JSON report, the printed tables, ``--compare`` and the plot
``settings``       what every case of a run shares (model, dtype, data, iterations ...)
``machine``        CPU, GPU and library versions for the report
``photos``         photo-like JPEGs in a RecordIO file, for loader and real-data runs
``cli``            what benchmark.py's commands share: settings and usage problems from
                   the parsed flags, COCO checks, a detector's ``--loaders`` frame, the report
``mask_rcnn_cli``  benchmark.py's Mask R-CNN commands: by-task defaults, flag checks,
                   ``--loaders`` and ``--peer gluoncv``
=================  ======================================================================

Only ``inference`` and ``mask_rcnn_inference`` import MXNet at module level, so
``benchmark.py --loaders`` (without a detection ``--arch``) and ``--make-data`` also run where
DALI is installed but MXNet is not.
"""
