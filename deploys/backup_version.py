"""The Chroma version a backup was taken with, for both restores (archive and snapshot).

Chroma migrates its data forward only, so a backup is restored on the version that
wrote it: this host's settings with that ``chroma_version``, and, when the host runs
(or declares) another version, that version's image and the compose file naming it.
"""

from __future__ import annotations

from pyinfra import host

from declaration.resources import Declared
from declaration.settings import Settings, SettingsError, load_settings
from declaration.versions import deployed_version
from facts.project import ProjectFiles
from operations import image
from plumbing import host_state


def settings_of_version(
    settings: Settings, version: str, key: str, named: str, backup: str
) -> tuple[Settings, str | None]:
    """This host's settings with ``chroma_version`` the backup's; or why they do not fit.

    ``named`` says where the version was read (``its manifest names``); ``backup`` what
    to restore instead (``an archive``), both for the refusal's line.
    """
    if version == settings.version:
        return settings, None
    try:
        return load_settings({**host.data.dict(), "chroma_version": version}), None
    except SettingsError as error:
        return settings, (
            f"{key}: {named} Chroma {version!r}, and this host's settings do not fit that "
            f"version ({error}): nothing was changed; restore {backup} of a version these "
            "settings fit, or fix the settings"
        )


def image_of_version(settings: Settings, then: Declared, what: str) -> str | None:
    """Declare the image of ``then``'s version when the host runs (or declares) another one.

    Returns the compose file's content naming that version, for the restore to write
    once the data is in; None when the version the host has is the backup's.
    """
    files = host_state.read(ProjectFiles, project_dir=settings.project_dir)
    deployed = deployed_version(files["compose"]["content"]) if files["compose"] else None
    if then.settings.version == (deployed or settings.version):
        return None
    image.chroma_image(
        name=f"Image {then.settings.image_ref} {what}",
        stack=then.stack_target,
        version=then.settings.version,
        source=then.settings.image_source,
        build_dir=then.settings.image_build_dir,
    )
    return then.compose_content
