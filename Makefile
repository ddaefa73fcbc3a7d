# Sluice: the two commands a new user runs are `make demo` and `make test`.
# Both install the Debian packages they need when missing (as root, or with sudo).

SWIFT ?= swift
APT_PACKAGES := pkg-config libpcap-dev libnetfilter-queue-dev libnfnetlink-dev libmnl-dev iptables nftables iproute2 procps tcpreplay tcpdump ethtool ipset iputils-ping python3
DEMO_OUT ?= out/demo

.PHONY: deps build release demo test captures bench bench-inline sweep fuzz sanitize clean

deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "== installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# .ci/fresh-modules: after the sources change, this package's modules are compiled from scratch
# (SwiftPM can skip a module whose dependency's struct layout changed; see the script).
build: deps
	@sh .ci/fresh-modules debug check
	$(SWIFT) build
	@sh .ci/fresh-modules debug stamp

release: deps
	@sh .ci/fresh-modules release check
	$(SWIFT) build -c release --product sluice
	@sh .ci/fresh-modules release stamp

# Replays the bundled edge-box captures (what arrived on eth0 and eth1) through the bundled
# rule set and network model, and prints a summary; outputs go to $(DEMO_OUT).
demo: release
	@echo "== sluice replay: captures/edge-eth0.pcap (eth0) + captures/edge-eth1.pcap (eth1), examples/edge/"
	.build/release/sluice replay --rules examples/edge/edge.rules --network examples/edge/network \
	  --in eth0=captures/edge-eth0.pcap --in eth1=captures/edge-eth1.pcap --out $(DEMO_OUT)

test: deps
	@sh .ci/fresh-modules debug check
	$(SWIFT) build --build-tests
	@sh .ci/fresh-modules debug stamp
	$(SWIFT) test

# Regenerates captures/ from Sources/capgen (deterministic; a test checks the committed files match).
captures: deps
	$(SWIFT) run capgen captures

bench: deps
	cd Benchmarks && $(SWIFT) package benchmark thresholds check

# Scaling sweeps over `sluice bench --json` (needs ../shared): tables and SVG plots in docs/sweeps/.
sweep: deps
	@sh .ci/fresh-modules release check
	$(SWIFT) build -c release --product sluice
	$(SWIFT) build -c release --product capgen
	@sh .ci/fresh-modules release stamp
	python3 Benchmarks/sweep.py

# Sluice inline beside the NFQUEUE floors of ../shared/anchors/nfq-bench (root; writes docs/bench-inline.md).
bench-inline: deps
	bash Benchmarks/inline/bench-inline.sh

# libFuzzer targets (package Fuzz/, built with -sanitize=fuzzer,address): the wire parser, the
# capture reader, the rule parsers, the network-model parser; FUZZ_SECONDS each (default 60).
# Fails on a crash, a hang, a leak. Crashing inputs: Fuzz/.build/fuzz/artifacts/TARGET/.
# python3 (Fuzz/seeds.py) cuts the captures into FuzzWire's seed frames.
FUZZ_SECONDS ?= 60
fuzz:
	@$(MAKE) --no-print-directory deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash Fuzz/fuzz.sh

# The test suite once under AddressSanitizer (.build-asan) and once under ThreadSanitizer
# (.build-tsan). Slow (each a full build; the ASan run about 12 minutes, TSan longer, on two
# cores); not part of CI. SANITIZE_TEST_ARGS is passed to `swift test` (e.g. --skip ClassBench).
# LeakSanitizer is off by default here: at exit it reports only allocations of XCTest (test-case
# objects it keeps in cycles, with what their properties hold) and swift-foundation
# (Data(contentsOf:), Process.run); SANITIZE_LEAKS=1 shows them. The fuzz targets check leaks
# in the parsers per input.
SANITIZE_TEST_ARGS ?=
SANITIZE_LEAKS ?= 0
sanitize: deps
	$(SWIFT) build --build-tests -Xswiftc -sanitize=address -Xcc -DSLUICE_NO_MALLOC_COUNTER --scratch-path .build-asan
	ASAN_OPTIONS=detect_leaks=$(SANITIZE_LEAKS) $(SWIFT) test --skip-build --scratch-path .build-asan $(SANITIZE_TEST_ARGS)
	$(SWIFT) build --build-tests -Xswiftc -sanitize=thread -Xcc -DSLUICE_NO_MALLOC_COUNTER --scratch-path .build-tsan
	$(SWIFT) test --skip-build --scratch-path .build-tsan $(SANITIZE_TEST_ARGS)

clean:
	rm -rf .build .build-asan .build-tsan Fuzz/.build out
