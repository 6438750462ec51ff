"""The shapes world: the procedural, captioned clips stunet trains on, and how clips are scored.

Lumiere's STUNet (``stunet.model``) knows nothing of this world; the world supplies the
training data, the vocabulary and the evaluation:

    world       procedural clips (one coloured shape doing one motion) with per-frame ground truth
    data        world clips and captions -> tensors and tokenizer for the model
    metrics     analytic detectors that score a clip's colour, shape, motion and coherence
    periodic    spin, orbit and bounce detectors: rate, period and sense, against the prompt
    prompts     the prompt sets and the seed arithmetic shared by eval and compare
    evaluate    ``stunet eval``: generate clips for a fixed prompt set and score them
    stats       McNemar's test and intervals for paired right / wrong outcomes
    paired      ``stunet eval --against``: a model against a reference clip by clip (non-inferiority)
    compare     ``stunet compare``: STUNet against a keyframe cascade (compare_scores: run and
                aggregate; compare_report: the text; compare_figures: the pictures)
"""
