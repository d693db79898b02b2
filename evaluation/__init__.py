"""Evaluation of model outputs against ground truth, per task.

==========  ======================================================================
module      what it does
==========  ======================================================================
``coco``    COCO box AP/AR with pycocotools: detections per image in the source
            file's category ids and pixels, gathered to rank 0, ``bbox.json``
==========  ======================================================================
"""
