"""Exports of a published version for other trainers (verl, LLaMA-Factory, axolotl, OpenRLHF): pure kernels that
turn the views into each trainer's files, and the stage that writes them outside the version folder."""
