"""How the host-side tools reach a host that several projects share."""

from __future__ import annotations

from pyinfra.api import FileUploadCommand

from plumbing.host_tools import TOOL_FILES, TOOLS_DIR, upload_tools


def test_a_tool_is_never_rewritten_in_place_and_projects_upload_to_names_of_their_own():
    """An upload rewrites its destination in place; another project's backup may run the
    tool at that moment. So no upload goes to a tool's own path: each goes to a name of
    its project's, and one command renames them into place after every upload."""
    finals = {f"{TOOLS_DIR}/{name}" for name in TOOL_FILES}
    one, other = upload_tools("/srv/one"), upload_tools("/srv/other")
    for commands in (one, other):
        uploads = [c for c in commands if isinstance(c, FileUploadCommand)]
        assert len(uploads) == len(TOOL_FILES)
        assert not {upload.dest for upload in uploads} & finals
        rename = commands[-1]
        assert isinstance(rename, str)
        assert commands.index(uploads[-1]) < len(commands) - 1
        for upload in uploads:
            final = f"{TOOLS_DIR}/{upload.dest.rsplit('/', 1)[1].split('.', 2)[1]}.py"
            assert final in finals
            assert f"mv -f {upload.dest} {final}" in rename
    parts = {c.dest for c in one if isinstance(c, FileUploadCommand)}
    assert not parts & {c.dest for c in other if isinstance(c, FileUploadCommand)}
