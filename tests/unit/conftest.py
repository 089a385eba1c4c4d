import hashlib
import http.server
import io
import shutil
import tarfile
import threading

import pytest

from harness.host.cache import Cache

FAKE_MAKEFILE = """\
VERSION = 5
PATCHLEVEL = 0
SUBLEVEL = 0
EXTRAVERSION = -fake
O ?= .
TREE := $(CURDIR)
# control files (calls.log, FAIL, HANG, drop.txt) live beside the original tree
CONTROL := @CONTROL@
SRCS := $(sort $(wildcard mm/*.c))
OBJS := $(patsubst %.c,$(O)/%.o,$(SRCS))

allnoconfig:
\t@mkdir -p $(O)
\t@echo allnoconfig >> $(CONTROL)/calls.log
\t@grep -v -x -f $(CONTROL)/drop.txt $(KCONFIG_ALLCONFIG) > $(O)/.config || true

defconfig:
\t@mkdir -p $(O)
\t@echo CONFIG_DEFCONFIG_ONLY=y > $(O)/.config

olddefconfig:
\t@echo olddefconfig >> $(CONTROL)/calls.log

clean:
\t@echo clean >> $(CONTROL)/calls.log

# a real make rule: an object is its source's text, rebuilt when the
# source is newer; '#error' in a source fails its compile
$(O)/mm/%.o: mm/%.c
\t@mkdir -p $(O)/mm
\t@echo "  CC      mm/$*.o"
\t@echo mm/$*.o >> $(CONTROL)/compiled.log
\t@if grep -q '^#error' $<; then echo "$<:1:2: error: #error in the source"; exit 1; fi
\t@cp $< $@

bzImage Image zImage: $(OBJS)
\t@echo build >> $(CONTROL)/calls.log
\t@if [ -f $(CONTROL)/FAIL ]; then echo "mm/migrate.c:1398:5: error: expected ';' before 'return'"; exit 2; fi
\t@if [ -f $(CONTROL)/HANG ]; then sleep 30; fi
\t@mkdir -p $(O)/arch/x86/boot $(O)/arch/arm64/boot $(O)/arch/arm/boot
\t@(echo image; cat $(OBJS) /dev/null) > $(O)/arch/x86/boot/bzImage
\t@cp $(O)/arch/x86/boot/bzImage $(O)/arch/arm64/boot/Image
\t@cp $(O)/arch/x86/boot/bzImage $(O)/arch/arm/boot/zImage
\t@echo "ffffffff81000000 T _stext" > $(O)/System.map
"""

FAKE_SOURCES = {
    "mm/migrate.c": "int migrate_pages(void) { return 0; }\n",
    "mm/compaction.c": "int compact_zone(void) { return 0; }\n",
}

FAKE_KCONFIG = """\
config SHMEM
\tbool "shmem" if EXPERT
\tdefault y

config TMPFS
\tbool "tmpfs"
\tdepends on SHMEM
"""


def write_fake_tree(tree, control):
    """The fake tree's files under ``tree``, its control files in ``control``."""
    tree.mkdir(parents=True, exist_ok=True)
    (tree / "Makefile").write_text(FAKE_MAKEFILE.replace("@CONTROL@", str(control)))
    (tree / "Kconfig").write_text(FAKE_KCONFIG)
    for name, text in FAKE_SOURCES.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)


@pytest.fixture
def fake_tree(tmp_path):
    """A fake kernel tree whose Makefile records calls and fails on demand
    (touch ../FAIL), drops options (lines in ../drop.txt)."""
    tree = tmp_path / "linux"
    write_fake_tree(tree, tmp_path)
    (tmp_path / "drop.txt").write_text("")
    (tmp_path / "calls.log").write_text("")
    (tmp_path / "compiled.log").write_text("")
    return tree


@pytest.fixture
def cache(tmp_path):
    return Cache(tmp_path / "cache")


def make_tarball(top: str, files: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def fake_server():
    """An HTTP server on 127.0.0.1 serving {path: bytes}."""
    content: dict = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = content.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", content
    finally:
        server.shutdown()
        server.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def needs(*tools):
    """Skip (saying which package) when a host tool the test runs is absent."""
    from harness.host.toolchain import PACKAGES

    absent = [t for t in tools if shutil.which(t) is None]
    return pytest.mark.skipif(
        bool(absent), reason=f"needs {', '.join(absent)} (apt-get install {' '.join(PACKAGES.get(t, t) for t in absent)})"
    )
