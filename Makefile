# starttlsd: a transparent TLS-upgrading SMTP proxy.
#   make              build build/starttlsd and build/starttlsctl
#   make SANITIZE=1   build with AddressSanitizer + UBSan into build/san/
#   make test         install what is missing, run every test (unit + integration)
#   make demo         install what is missing, build, show the main job live
#   make test-systemd the systemd unit under a real systemd, in a qemu VM (tests/vm/)
#   make install      PREFIX=/usr/local DESTDIR=

CC        ?= gcc
VERSION   := 0.1.0
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
BSSL_INC  := /usr/include/android
BSSL_LIB  := /usr/lib/$(MULTIARCH)/android

ifeq ($(SANITIZE),1)
BUILD     ?= build/san
SANFLAGS  := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
OPT       := -O1 -g
else
BUILD     ?= build
SANFLAGS  :=
OPT       := -O2 -g
endif

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wformat=2 -Wcast-qual -Wwrite-strings -Wvla -Wno-unused-parameter
HARDEN   := -fstack-protector-strong -fPIE -D_FORTIFY_SOURCE=2 -fno-strict-aliasing
CPPFLAGS += -DSTARTTLSD_VERSION=\"$(VERSION)\" -Iinclude -isystem $(BSSL_INC) -D_GNU_SOURCE
CFLAGS   ?= $(OPT)
CFLAGS   += -std=c11 $(WARN) $(HARDEN) $(SANFLAGS) -MMD -MP
LDFLAGS  += $(SANFLAGS) -pie -Wl,-z,relro,-z,now -L$(BSSL_LIB) -Wl,-rpath,$(BSSL_LIB)
LDLIBS   += -lev -lseccomp -lnftnl -lmnl -llmdb -lssl -lcrypto -lpthread

LIB_SRCS := $(filter-out proxy/main.c proxy/ctl.c,$(wildcard proxy/*.c))
LIB_OBJS := $(LIB_SRCS:proxy/%.c=$(BUILD)/obj/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/unit/%)

.PHONY: all clean test unit integration demo install deps valgrind fuzz fuzz-smoke bench bench-smoke test-systemd
all: $(BUILD)/starttlsd $(BUILD)/starttlsctl

$(BUILD)/obj/%.o: proxy/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/libstarttlsd.a: $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/starttlsd: $(BUILD)/obj/main.o $(BUILD)/libstarttlsd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/starttlsctl: $(BUILD)/obj/ctl.o $(BUILD)/libstarttlsd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/unit/%: tests/unit/%.c $(BUILD)/libstarttlsd.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libstarttlsd.a $(LDLIBS) -lcmocka

unit: $(UNIT_BINS)
	@tests/run-unit.sh $(UNIT_BINS)

deps:
	@tests/deps.sh

# The whole suite: unit tests and integration tests, each against the
# optimised build and the AddressSanitizer/UBSan build.
test: deps
	$(MAKE) all unit
	$(MAKE) SANITIZE=1 all unit
	tests/run-integration.sh build/starttlsd
	tests/run-integration.sh build/san/starttlsd
	$(MAKE) test-systemd
	$(MAKE) valgrind
	$(MAKE) fuzz-smoke
	$(MAKE) bench-smoke

PREFIX  ?= /usr/local
DESTDIR ?=
SYSTEMDUNITDIR ?= /etc/systemd/system
install: all
	install -D -m 0755 $(BUILD)/starttlsd $(DESTDIR)$(PREFIX)/sbin/starttlsd
	install -D -m 0755 $(BUILD)/starttlsctl $(DESTDIR)$(PREFIX)/sbin/starttlsctl
	install -D -m 0644 docs/starttlsd.8 $(DESTDIR)$(PREFIX)/share/man/man8/starttlsd.8
	install -D -m 0644 docs/starttlsd.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/starttlsd.conf.5
	install -D -m 0644 docs/starttlsctl.8 $(DESTDIR)$(PREFIX)/share/man/man8/starttlsctl.8
	install -d $(DESTDIR)$(SYSTEMDUNITDIR)
	sed 's|/usr/local/sbin/|$(PREFIX)/sbin/|g' deploy/starttlsd.service \
		>$(DESTDIR)$(SYSTEMDUNITDIR)/starttlsd.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/starttlsd.service
	install -D -m 0644 deploy/nftables.conf $(DESTDIR)$(PREFIX)/share/doc/starttlsd/nftables.conf
	install -D -m 0755 deploy/iptables.sh $(DESTDIR)$(PREFIX)/share/doc/starttlsd/iptables.sh
	install -D -m 0644 deploy/sysctl.conf $(DESTDIR)$(PREFIX)/share/doc/starttlsd/sysctl.conf
	install -D -m 0644 deploy/rsyslog.conf $(DESTDIR)$(PREFIX)/share/doc/starttlsd/rsyslog.conf
	install -d -m 0700 $(DESTDIR)/var/lib/starttlsd
	install -D -m 0644 deploy/starttlsd.conf $(DESTDIR)$(PREFIX)/share/doc/starttlsd/starttlsd.conf.example
	@if [ ! -e $(DESTDIR)/etc/starttlsd/starttlsd.conf ]; then \
		install -D -m 0644 deploy/starttlsd.conf $(DESTDIR)/etc/starttlsd/starttlsd.conf; fi

demo: deps
	$(MAKE) all
	tests/demo.sh

# Every integration test once more, with starttlsd under valgrind memcheck
# (following the workers): errors and definite leaks fail.
VALGRIND_TESTS ?= $(wildcard tests/integration/[1-9]*.sh)
valgrind: deps all
	VALGRIND_BIN=$(CURDIR)/build/starttlsd STARTTLSCTL=$(CURDIR)/build/starttlsctl \
		tests/run-integration.sh tests/valgrind-starttlsd $(VALGRIND_TESTS)

integration: all
	tests/run-integration.sh $(BUILD)/starttlsd

# deploy/starttlsd.service under a real systemd: Debian 12 booted in qemu
# (software emulation), starttlsd put in by "make install DESTDIR=", checked
# from start to SIGKILL and restart (tests/vm/test-systemd.sh). The VM's
# root file system is cached in build/vm/ (about a minute to build, once).
test-systemd: deps all
	tests/vm/test-systemd.sh

clean:
	rm -rf build

-include $(LIB_OBJS:.o=.d) $(BUILD)/obj/main.d $(BUILD)/obj/ctl.d

# ---- fuzzing: libFuzzer harnesses in tests/fuzz/ (clang-14) -------------------------
#   make fuzz         build every harness, run each for FUZZ_SECONDS (default 60);
#                     new inputs in build/fuzz/corpus/, crashes in build/fuzz/crashes/
#   make fuzz-smoke   build, run each for FUZZ_SMOKE_SECONDS (default 3) from its seeds
#   make fuzz FUZZ_TARGETS=fuzz_reply   only some
# The proxy sources are compiled again with clang, coverage and ASan+UBSan, into
# build/fuzz/ (never the gcc-built build/libstarttlsd.a).
FUZZ_CC            ?= clang-14
FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 3
FUZZ_DIR           := build/fuzz
FUZZ_SAN           := -fsanitize=address,undefined -fno-sanitize-recover=all \
                      -fno-omit-frame-pointer
FUZZ_CFLAGS        := -std=c11 -g -O1 $(FUZZ_SAN) -MMD -MP
FUZZ_NAMES         := $(basename $(notdir $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_TARGETS       ?= $(FUZZ_NAMES)
FUZZ_BINS          := $(FUZZ_NAMES:%=$(FUZZ_DIR)/%)
FUZZ_OBJS          := $(LIB_SRCS:proxy/%.c=$(FUZZ_DIR)/obj/%.o)

.PHONY: fuzz fuzz-smoke fuzz-build
fuzz-build: $(FUZZ_BINS)

# Warnings as in the main build; -Werror only where gcc does not already enforce it.
$(FUZZ_DIR)/obj/%.o: proxy/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) $(filter-out -Werror,$(WARN)) \
		-fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_DIR)/libstarttlsd-fuzz.a: $(FUZZ_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_BINS): $(FUZZ_DIR)/%: tests/fuzz/%.c $(FUZZ_DIR)/libstarttlsd-fuzz.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) $(WARN) -fsanitize=fuzzer -o $@ $< \
		$(FUZZ_DIR)/libstarttlsd-fuzz.a -L$(BSSL_LIB) -Wl,-rpath,$(BSSL_LIB) $(LDLIBS)

fuzz: deps fuzz-build
	tests/fuzz/run.sh run $(FUZZ_SECONDS) $(FUZZ_DIR) $(FUZZ_TARGETS)

fuzz-smoke: deps fuzz-build
	tests/fuzz/run.sh smoke $(FUZZ_SMOKE_SECONDS) $(FUZZ_DIR) $(FUZZ_TARGETS)

-include $(wildcard $(FUZZ_DIR)/obj/*.d $(FUZZ_DIR)/*.d)

# ---- benchmarks: tests/bench, docs/performance.md ------------------------------
#   make bench         starttlsd beside stunnel and plaintext direct (root, ~10 min);
#                      prints the tables and writes docs/performance.md
#   make bench-smoke   the same script on tiny loads, one run, no report (~30 s)
BENCH_DIR   := build/bench
BENCH_FLAGS := -O2 -g -std=c11 $(WARN) $(HARDEN)

$(BENCH_DIR)/sink: tests/bench/sink.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(BENCH_FLAGS) -o $@ $< -pie -L$(BSSL_LIB) -Wl,-rpath,$(BSSL_LIB) -lssl -lcrypto -lpthread

$(BENCH_DIR)/bclient: tests/bench/bclient.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(BENCH_FLAGS) -o $@ $< -pie

.PHONY: bench bench-smoke bench-tools
bench-tools: $(BENCH_DIR)/sink $(BENCH_DIR)/bclient

bench: deps
	$(MAKE) SANITIZE= all bench-tools
	tests/bench/run.sh

bench-smoke: deps
	$(MAKE) SANITIZE= all bench-tools
	tests/bench/run.sh --smoke

# ---- firmware: starttlsd as a bootable edge-gateway appliance (firmware/README.md) ----
#   make firmware              build/firmware/starttlsd-appliance.img (root; the Debian
#                              tree is cached in build/firmware/, its .debs in apt-cache/)
#   make test-firmware         the appliance under qemu: LAN mail over TLS, remote syslog,
#                              reboot (pins), broken config, A/B upgrade and rollback
#   make test-firmware-smoke   one boot, one mail over TLS, the syslog line
.PHONY: firmware test-firmware test-firmware-smoke
firmware: deps all
	firmware/build.sh

test-firmware: firmware
	tests/firmware/test-firmware.sh

test-firmware-smoke: firmware
	tests/firmware/test-firmware.sh --smoke
