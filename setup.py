"""Only a build hook; the metadata is in setup.cfg. The wheel carries the web page: web/ (kept at the top of the
repository) is copied into the package as hmt_stream/web/, where hmt_stream.app looks for it when installed."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

WEB = Path(__file__).resolve().parent / "web"


class BuildWithWebPage(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:  # an editable install serves web/ from the checkout itself
            shutil.copytree(WEB, Path(self.build_lib) / "hmt_stream" / "web", dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithWebPage})
