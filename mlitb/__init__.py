"""MLitB: machine learning in the browser — a master server, browser and grid workers, research closures."""

__version__ = "0.1.0"
