"""Command-line programs of the package (``main(argv=None)`` each); ``tools/*.py`` and the
console commands installed by ``pip`` call them:

=======================  ==================================  ==========================
console command          module                              script
=======================  ==================================  ==========================
``skinformer-train``     :mod:`skinformer.cli.train`         ``tools/train_net.py``
``skinformer-predict``   :mod:`skinformer.cli.predict`       ``tools/predict.py``
``skinformer-evaluate``  :mod:`skinformer.cli.evaluate`      ``tools/evaluate.py``
``skinformer-validate``  :mod:`skinformer.cli.validate`      ``tools/validate_dataset.py``
``skinformer-demo``      :mod:`skinformer.demo.app`          ``demo/app.py``
=======================  ==================================  ==========================

Without a console command: :mod:`~skinformer.cli.plot` (``tools/plot.py``),
:mod:`~skinformer.cli.plot_metrics`, :mod:`~skinformer.cli.generate_skin_masks`,
:mod:`~skinformer.cli.create_skin_dataset`, :mod:`~skinformer.cli.export_model` and
:mod:`~skinformer.cli.draw_architecture` (each ``tools/<name>.py``). The reusable logic lives in the
subpackages (e.g. :mod:`skinformer.evaluation.folder`, :mod:`skinformer.data.skin_masks`).
"""
