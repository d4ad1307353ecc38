"""unsmear: remove motion blur from video and images.

The packages follow the data flow (see README.md): ``dataset_builder`` makes training pairs,
``models`` trains the generator, ``pipeline`` deblurs one video or image, ``jobs`` runs
folders on Ray. This package holds the ``unsmear`` console command, the version, and what
the four packages share without importing one another: the command-line conventions
(:mod:`unsmear.cli_conventions`), names loaded on first use (:mod:`unsmear.lazy_exports`),
files written under a partial name (:mod:`unsmear.files`), the video and image extensions
(:mod:`unsmear.media`) and one-line error text (:mod:`unsmear.errors`). They import only the
standard library.
"""

# The one place the version is written; pyproject.toml reads it from here.
__version__ = "0.1.0"
