"""unsmear: remove motion blur from video and images.

The packages follow the data flow (see README.md): ``dataset_builder`` makes training pairs,
``models`` trains the generator, ``pipeline`` deblurs one video or image, ``jobs`` runs
folders on Ray. This package holds only the ``unsmear`` console command and the version.
"""

# The one place the version is written; pyproject.toml reads it from here.
__version__ = "0.1.0"
