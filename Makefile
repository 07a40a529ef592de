# starttlsd: a transparent TLS-upgrading SMTP proxy.
#   make              build build/starttlsd and build/starttlsctl
#   make SANITIZE=1   build with AddressSanitizer + UBSan into build/san/
#   make test         install what is missing, run every test (unit + integration)
#   make demo         install what is missing, build, show the main job live
#   make test-systemd the systemd unit under a real systemd, in a qemu VM (tests/vm/)
#   make test-ops     deploy/ops/ (mtail, alert rules, dashboard) with rsyslog, mtail, Prometheus
#   make install      PREFIX=/usr/local DESTDIR=   (make uninstall: the same, removed)
#   make deb          a Debian package in build/deb/ (dpkg-buildpackage, lintian)

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
LDLIBS   += -lev -lseccomp -lnftnl -lmnl -llmdb -lhiredis -lssl -lcrypto -lpthread

LIB_SRCS := $(filter-out proxy/main.c proxy/ctl.c proxy/tlsrpt_main.c,$(wildcard proxy/*.c))
LIB_OBJS := $(LIB_SRCS:proxy/%.c=$(BUILD)/obj/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/unit/%)

.PHONY: all clean test unit integration demo install uninstall deb deps valgrind valgrind-all fuzz fuzz-smoke bench bench-smoke test-systemd test-ops
all: $(BUILD)/starttlsd $(BUILD)/starttlsctl

$(BUILD)/obj/%.o: proxy/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/libstarttlsd.a: $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

# The daemon links libunbound (the policy process): libev statically (EV_STATIC below).
$(BUILD)/starttlsd: $(BUILD)/obj/main.o $(BUILD)/libstarttlsd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(UNBOUND_LDLIBS)

# jansson (pinjson.c) only where pins are read or written as JSON, never the daemon.
$(BUILD)/starttlsctl: $(BUILD)/obj/ctl.o $(BUILD)/libstarttlsd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -ljansson
$(BUILD)/unit/test_pinjson: LDLIBS += -ljansson
$(BUILD)/unit/test_tlsrpt: LDLIBS += -ljansson -lz

$(BUILD)/unit/%: tests/unit/%.c $(BUILD)/libstarttlsd.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libstarttlsd.a $(LDLIBS) -lcmocka

# libunbound (proxy/resolver.c) only in programs that link libev statically:
# Debian's libev.so exports libevent look-alikes (event_add, ...) that
# libunbound would bind to and corrupt the heap with (docs/dane.md). The
# static ev.o exports none of them, so libunbound gets the real libevent.
EV_STATIC := -Wl,-Bstatic -lev -Wl,-Bdynamic
UNBOUND_LDLIBS = $(filter-out -lev,$(LDLIBS)) $(EV_STATIC) -lunbound -lm

# dnsq and pdq: the resolver and policy-process test tools (tests/integration/91-dnssec.sh).
all: $(BUILD)/dnsq $(BUILD)/pdq
$(BUILD)/dnsq $(BUILD)/pdq: $(BUILD)/%: tests/%.c $(BUILD)/libstarttlsd.a
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libstarttlsd.a $(UNBOUND_LDLIBS)

# httpsq: the HTTPS client's test tool (tests/integration/89-https.sh). https.c
# needs only BoringSSL and libev, but resolves names through resolver.c, so
# the tool links libunbound the EV_STATIC way. Its objects are named, not
# taken from libstarttlsd.a: it needs no other part of the proxy.
HTTPS_OBJS := $(BUILD)/obj/https.o $(BUILD)/obj/resolver.o $(BUILD)/obj/reswire.o
all: $(BUILD)/httpsq
$(BUILD)/httpsq: tests/httpsq.c $(HTTPS_OBJS)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(HTTPS_OBJS) $(UNBOUND_LDLIBS)

# stsq: the MTA-STS fetcher's test tool (tests/integration/88-sts.sh); stsfetch.c
# runs in policyd, beside libunbound: linked the EV_STATIC way, objects named.
STSF_OBJS := $(BUILD)/obj/stsfetch.o $(BUILD)/obj/sts.o $(HTTPS_OBJS)
all: $(BUILD)/stsq
$(BUILD)/stsq: tests/stsq.c $(STSF_OBJS)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(STSF_OBJS) $(UNBOUND_LDLIBS)
# starttlsd-tlsrpt: TLS-RPT reports, show and send (proxy/tlsrpt_main.c; starttlsctl
# tlsrpt runs it). The resolver (libunbound: libev statically, as above), jansson and
# zlib for the report, https.c (BoringSSL) for https: collectors.
all: $(BUILD)/starttlsd-tlsrpt
$(BUILD)/starttlsd-tlsrpt: $(BUILD)/obj/tlsrpt_main.o $(BUILD)/libstarttlsd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(UNBOUND_LDLIBS) -ljansson -lz
# tlsrptq: records results as policyd does (tests/integration/89-tlsrpt.sh).
all: $(BUILD)/tlsrptq
$(BUILD)/tlsrptq: tests/tlsrptq.c $(BUILD)/libstarttlsd.a
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libstarttlsd.a $(LDLIBS)

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
	$(MAKE) test-firmware-smoke
	$(MAKE) test-ops
	$(MAKE) valgrind
	$(MAKE) fuzz-smoke
	$(MAKE) bench-smoke

PREFIX  ?= /usr/local
DESTDIR ?=
# The unit under PREFIX too: systemd reads /usr/local/lib/systemd/system and
# /usr/lib/systemd/system as well as /etc/systemd/system.
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR  ?= $(PREFIX)/share/doc/starttlsd
# Created by make install (0700); empty for a package, whose tmpfiles.d does it.
STATEDIR ?= /var/lib/starttlsd
DOCS    := docs/logging.md docs/policy.md docs/security.md docs/metrics.md \
           docs/performance.md deploy/README.md
OPSDOCS := deploy/ops/README.md deploy/ops/starttlsd.mtail \
           deploy/ops/starttlsd-rules.yml deploy/ops/starttlsd-dashboard.json
install: all
	install -D -m 0755 $(BUILD)/starttlsd $(DESTDIR)$(PREFIX)/sbin/starttlsd
	install -D -m 0755 $(BUILD)/starttlsctl $(DESTDIR)$(PREFIX)/sbin/starttlsctl
	install -D -m 0755 $(BUILD)/starttlsd-tlsrpt $(DESTDIR)$(PREFIX)/sbin/starttlsd-tlsrpt
	install -D -m 0644 docs/starttlsd.8 $(DESTDIR)$(PREFIX)/share/man/man8/starttlsd.8
	install -D -m 0644 docs/starttlsd.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/starttlsd.conf.5
	install -D -m 0644 docs/starttlsctl.8 $(DESTDIR)$(PREFIX)/share/man/man8/starttlsctl.8
	install -D -m 0644 docs/starttlsd-tlsrpt.8 $(DESTDIR)$(PREFIX)/share/man/man8/starttlsd-tlsrpt.8
	install -d $(DESTDIR)$(SYSTEMDUNITDIR)
	sed 's|/usr/local/sbin/|$(PREFIX)/sbin/|g' deploy/starttlsd.service \
		>$(DESTDIR)$(SYSTEMDUNITDIR)/starttlsd.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/starttlsd.service
	sed 's|/usr/local/sbin/|$(PREFIX)/sbin/|g' deploy/starttlsd-tlsrpt.service \
		>$(DESTDIR)$(SYSTEMDUNITDIR)/starttlsd-tlsrpt.service
	install -m 0644 deploy/starttlsd-tlsrpt.timer $(DESTDIR)$(SYSTEMDUNITDIR)/
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/starttlsd-tlsrpt.service
	install -d $(DESTDIR)$(DOCDIR)/ops
	install -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	install -m 0644 $(OPSDOCS) $(DESTDIR)$(DOCDIR)/ops/
	install -m 0644 deploy/nftables.conf deploy/sysctl.conf deploy/rsyslog.conf $(DESTDIR)$(DOCDIR)/
	install -m 0644 deploy/iptables.sh $(DESTDIR)$(DOCDIR)/iptables.sh
	install -m 0644 deploy/starttlsd.conf $(DESTDIR)$(DOCDIR)/starttlsd.conf.example
	if [ -n "$(STATEDIR)" ]; then install -d -m 0700 $(DESTDIR)$(STATEDIR); fi
	@if [ ! -e $(DESTDIR)/etc/starttlsd/starttlsd.conf ]; then \
		install -D -m 0644 deploy/starttlsd.conf $(DESTDIR)/etc/starttlsd/starttlsd.conf; fi

# What install put there, but the configuration and the pin store (kept, as a
# package's "remove" keeps them; delete /etc/starttlsd and STATEDIR by hand).
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/sbin/starttlsd $(DESTDIR)$(PREFIX)/sbin/starttlsctl
	rm -f $(DESTDIR)$(PREFIX)/share/man/man8/starttlsd.8 $(DESTDIR)$(PREFIX)/share/man/man8/starttlsctl.8
	rm -f $(DESTDIR)$(PREFIX)/share/man/man5/starttlsd.conf.5
	rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/starttlsd.service
	rm -f $(DESTDIR)$(PREFIX)/sbin/starttlsd-tlsrpt
	rm -f $(DESTDIR)$(PREFIX)/share/man/man8/starttlsd-tlsrpt.8
	rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/starttlsd-tlsrpt.service $(DESTDIR)$(SYSTEMDUNITDIR)/starttlsd-tlsrpt.timer
	rm -rf $(DESTDIR)$(DOCDIR)

# A Debian package (dpkg-buildpackage, debian/), built from a copy of this
# tree in build/deb/; lintian must find no error and no warning.
DEB_DIR := build/deb
deb:
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)/starttlsd-$(VERSION)
	tar --exclude=./build --exclude=./.git -cf - . | tar -xf - -C $(DEB_DIR)/starttlsd-$(VERSION)
	cd $(DEB_DIR)/starttlsd-$(VERSION) && dpkg-buildpackage -us -uc -b
	lintian --fail-on error,warning $(DEB_DIR)/starttlsd_$(VERSION)_*.changes
	@ls -l $(DEB_DIR)/*.deb

demo: deps
	$(MAKE) all
	tests/demo.sh

# Integration tests once more, with starttlsd under valgrind memcheck
# (following the workers): errors and definite leaks fail. make test runs
# the scripts that drive the relay, the smtp framing, the connection cache,
# the attacks and the worker processes (about 6 minutes); make valgrind-all
# runs every script (about 20 minutes).
VALGRIND_TESTS ?= $(foreach n,10 30 55 93 95 97,$(wildcard tests/integration/$(n)-*.sh))
valgrind: deps all
	VALGRIND_BIN=$(CURDIR)/build/starttlsd STARTTLSCTL=$(CURDIR)/build/starttlsctl \
		tests/run-integration.sh tests/valgrind-starttlsd $(VALGRIND_TESTS)
valgrind-all: deps all
	$(MAKE) valgrind VALGRIND_TESTS="$(wildcard tests/integration/[1-9]*.sh)"

integration: all
	tests/run-integration.sh $(BUILD)/starttlsd

# deploy/starttlsd.service under a real systemd: Debian 12 booted in qemu
# (software emulation), the package of "make deb" installed with apt, checked
# from start to SIGKILL, restart and purge (tests/vm/test-systemd.sh). The VM's
# root file system is cached in build/vm/ (about a minute to build, once).
test-systemd: deps all deb
	tests/vm/test-systemd.sh

# deploy/ops/ with the real tools: starttlsd -> rsyslogd (deploy/rsyslog.conf)
# -> mtail (deploy/ops/starttlsd.mtail) -> Prometheus (the alert rules, the
# dashboard's queries); promtool unit tests of every alert; and the sd_notify
# messages against a stand-in socket (tests/ops/test-notify.sh). About 50 s.
test-ops: deps all
	tests/ops/test-ops.sh
	tests/ops/test-notify.sh

clean:
	rm -rf build

-include $(LIB_OBJS:.o=.d) $(BUILD)/obj/main.d $(BUILD)/obj/ctl.d $(BUILD)/obj/tlsrpt_main.d

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

$(FUZZ_DIR)/fuzz_pinjson: LDLIBS += -ljansson
$(FUZZ_DIR)/fuzz_tlsrpt: LDLIBS += -ljansson -lz
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
#   make bench         starttlsd beside stunnel and plaintext direct (root, ~12 min);
#                      prints the tables and writes docs/performance.md; its WAN section
#                      (issue 10) alone: tests/bench/run.sh --sections wan
#                      --wan-into docs/performance.md (~2.5 min)
#   make bench-smoke   the same script on tiny loads, one run, no report (~30 s)
BENCH_DIR   := build/bench
BENCH_FLAGS := -O2 -g -std=c11 $(WARN) $(HARDEN)

$(BENCH_DIR)/sink: tests/bench/sink.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(BENCH_FLAGS) -o $@ $< -pie -L$(BSSL_LIB) -Wl,-rpath,$(BSSL_LIB) -lssl -lcrypto -lpthread

$(BENCH_DIR)/bclient: tests/bench/bclient.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(BENCH_FLAGS) -o $@ $< -pie

$(BENCH_DIR)/delay: tests/bench/delay.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(BENCH_FLAGS) -o $@ $< -pie

.PHONY: bench bench-smoke bench-tools
bench-tools: $(BENCH_DIR)/sink $(BENCH_DIR)/bclient $(BENCH_DIR)/delay

bench: deps
	$(MAKE) SANITIZE= all bench-tools
	tests/bench/run.sh

bench-smoke: deps
	$(MAKE) SANITIZE= all bench-tools
	tests/bench/run.sh --smoke

# Issue 10's LAN CPU row alone: starttlsd (leg A) only, 1 KiB, a new
# connection per message, 10 sessions, 5 runs of 5,000 messages (~1 min);
# prints proxy CPU per message, server connections, resumed handshakes and
# the load average of each run; writes no report.
.PHONY: bench-cpu
bench-cpu: deps
	$(MAKE) SANITIZE= all bench-tools
	tests/bench/run.sh --sections load --cases 1k-new-c10 --legs A --runs 5 --messages 5000

# The fleet test (tests/integration/92-redis.sh) with a long soak: Redis
# killed and restarted SOAK_ROUNDS times while both gateways relay (~7 s a round).
.PHONY: soak-redis
soak-redis: deps all
	SOAK_ROUNDS=$${SOAK_ROUNDS:-30} tests/run-integration.sh $(BUILD)/starttlsd tests/integration/92-redis.sh

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
