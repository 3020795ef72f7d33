# QEMU net / virtio-net / ivshmem downstream series.
#
#   make                 install build deps, fetch + verify the base, apply
#                        configure-overlay/ and the series, build
#   make check           run every test; last line "N passed, N failed, N skipped"
#   make check-compat    the compatibility suite against the unpatched base
#   make check-sanitizers  ASan + UBSan build of the series branch in
#                        build/sanitizers, the qtests of tests/qtests.list
#                        against it; fails on any sanitizer report (not
#                        part of `make check`: a build of its own)
#   make bench           benchmarks (a report; nothing is asserted)
#   make bisect-check    build after each patch, incrementally
#   make check-bases     after make check: the 10.0.13 build and its
#                        qtest, functional, system and compat groups
#   make export          build/qemu's series branch -> patches/ + series
#   make guest           the offline test guest of tests/system (kernel + initramfs)
#   make assets          seed QEMU's asset cache with the .debs that the
#                        in-tree functional tests pin (no download when cached)
#
# Base selection (default: Debian's qemu_$(BASE)+ds.orig.tar.xz):
#   make BASE=10.0.13       (series-10.0, in build/base-10.0.13)
#   make QEMU_TARBALL=/path/to/qemu-X.Y.Z.tar.xz
#   make QEMU_SRC=/path/to/qemu.git [QEMU_REF=v10.2.2]   (tag/branch; default HEAD)

BASE ?= 10.2.2
export BASE QEMU_TARBALL QEMU_SRC QEMU_REF CACHE_DIR

# Another Debian base gets a build tree of its own, so that switching
# between the bases never throws a tree away.
BUILD_ROOT := $(CURDIR)/build$(if $(filter-out 10.2.2,$(BASE)),/base-$(BASE))
ifneq ($(BASE),10.2.2)
export BUILD_ROOT
endif
SRC := $(BUILD_ROOT)/qemu
OBJ := $(SRC)/build

.PHONY: all deps prepare build unpatched check check-hygiene check-qtest \
        check-functional check-system check-compat check-sanitizers bench \
        bisect-check export guest assets other-bases check-bases clean distclean

all: build

deps:
	@scripts/install-deps.sh

prepare: deps
	@scripts/prepare-tree.sh

build: prepare
	@scripts/build.sh

# The base without the series, same options: the compatibility suite and
# the benchmarks compare against it (build/unpatched, ccache makes it cheap).
unpatched: prepare
	@scripts/build-unpatched.sh

guest: deps
	@tests/guest/build.sh >/dev/null
	@tests/guest/build-ivshmem-irq.sh >/dev/null

# The functional tests' Debian packages, from $(CACHE_DIR)/debs (fetched
# with apt there if missing) into QEMU's asset cache.
assets: prepare
	@bash -c '. scripts/lib.sh && CACHE_DIR="$$CACHE_DIR" scripts/seed-assets.py "$$SRC"'

# The guest image is built here rather than by `make` so that a plain
# build needs no kernel download.
check: build unpatched guest assets other-bases
	@tests/run-checks.py

# The trees of the other bases, for the hygiene checks of their series
# (quilt, git am, the round trip, Debian's patches underneath), which
# run whichever base is tested.  A base that cannot be fetched is left
# out: those checks then skip, saying why.
BASES := 10.2.2 10.0.13
OTHER_BASES := $(filter-out $(BASE),$(BASES))
other-bases:
	@for b in $(OTHER_BASES); do \
	    env -u BUILD_ROOT -u SRC -u OBJ $(MAKE) --no-print-directory BASE=$$b prepare || \
	        echo ">>> BASE=$$b could not be prepared: its checks skip"; \
	done

# The other base after `make check`: the 10.0 tree (build/base-10.0.13)
# built, with the unpatched 10.0.13 beside it, and every group but the
# hygiene (make check ran both series' already) against it: qtests,
# functional, system (with the upgrade test, patched 10.0.13 -> patched
# 10.2.2) and compat (patched vs unpatched 10.0.13).  The same as
# `make BASE=10.0.13 check` without its second hygiene run.
check-bases: build other-bases
	@$(MAKE) --no-print-directory BASE=10.0.13 build unpatched guest assets
	@BUILD_ROOT=$(CURDIR)/build/base-10.0.13 tests/run-checks.py qtest functional system compat

check-functional: build assets
	@tests/run-checks.py functional

check-hygiene check-qtest check-system: build guest
	@tests/run-checks.py $(patsubst check-%,%,$@)

check-compat: build unpatched guest
	@tests/run-checks.py compat

# A worktree of build/qemu at branch series and a build dir of its own
# (build/sanitizers): build/qemu/build is not touched.  About 20 minutes
# with a cold ccache on 2 cores, so not part of `make check`.
check-sanitizers: prepare
	@scripts/check-sanitizers.sh

bench: build unpatched guest
	@tests/bench/run-bench.sh

bisect-check: prepare
	@scripts/bisect-check.sh

# The main series from build/qemu; with BASE=10.0.x, series-10.0 from
# that base's tree (after the main export, which it shares patches with).
export:
	@$(if $(filter-out 10.2.%,$(BASE)),scripts/export-series.sh "$(SRC)" "$(CURDIR)" $(word 1,$(subst ., ,$(BASE))).$(word 2,$(subst ., ,$(BASE))),scripts/export-series.sh)

clean:
	rm -rf $(OBJ) $(BUILD_ROOT)/unpatched/build $(BUILD_ROOT)/test-logs \
	    $(BUILD_ROOT)/sanitizers/qemu/build $(BUILD_ROOT)/sanitizers/test-logs

distclean:
	rm -rf $(BUILD_ROOT)
