"""IoKD: intent-oriented knowledge distillation into the E-LAMs (paper section IV).

Pipeline (``rapp-intent iokd-dataset``, ``rapp-intent distill``, ``rapp-intent iokd-report``;
every option a field of :mod:`~rapp_intent.iokd.config`):

1. :mod:`~rapp_intent.iokd.data`: the project's labelled intents; D_h is the ``train``
   split of every application (eq. 19), D_u the ``train`` split of the target application.
   The ``heldout`` split and ``dev_intents.jsonl`` are never seen by any step below.
2. :mod:`~rapp_intent.iokd.filtering`: SBERT similarity filtering, D_rel (eq. 20).
3. :mod:`~rapp_intent.iokd.cot`: chain-of-thought reasons from the C-LAM (eqs. 21, 22;
   :mod:`~rapp_intent.iokd.clam`).
4. :mod:`~rapp_intent.iokd.augment`: few-shot augmentation with a quality loop (eq. 23).
5. :mod:`~rapp_intent.iokd.contrastive`: top-k contrastive vectors by angular distance
   (eqs. 24, 25).
6. :mod:`~rapp_intent.iokd.dataset`: D_IoKD as JSON Lines (eq. 26).
7. :mod:`~rapp_intent.iokd.loss`: the weighted pairwise loss (eq. 31) with per-sample
   beta (eq. 32). ``minilm``: :mod:`~rapp_intent.iokd.minilm_pairs` (the pairs),
   :mod:`~rapp_intent.iokd.distill_minilm` (the head) and
   :mod:`~rapp_intent.iokd.distill_minilm_encoder` (encoder adapters with the head);
   ``smollm2``: :mod:`~rapp_intent.iokd.distill_smollm2`. Both stop early by
   :mod:`~rapp_intent.iokd.early_stopping`; :mod:`~rapp_intent.iokd.cards` writes and
   reads the artefacts' model cards.
8. :mod:`~rapp_intent.iokd.report`: the paper's Fig. 6 and Fig. 7. The studies produce
   data (:mod:`~rapp_intent.iokd.fig6`, :mod:`~rapp_intent.iokd.fig7`); Markdown
   (:mod:`~rapp_intent.iokd.render`), the plot (:mod:`~rapp_intent.iokd.plot`) and the
   documentation file's section (:mod:`~rapp_intent.iokd.doc_section`) are made from it.
"""
