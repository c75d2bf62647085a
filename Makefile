# Builds and installs xfer the way rsync or restic install:
#   make install                 build a release binary (static Swift standard library, stripped) and install it,
#                                its man pages and its bash, zsh and fish completions under PREFIX
#   make uninstall               remove exactly those files again
#   make install PREFIX=~/.local     another prefix; DESTDIR=/tmp/stage is prepended to every path (packaging)
#   make install XFER_BINARY=PATH    install an already built binary instead of building one (the tests use the
#                                    debug build); everything else is the same
# Run `make install` as a user who can write to PREFIX (sudo for /usr/local); it builds first if needed.

PREFIX ?= /usr/local
DESTDIR ?=
SWIFT ?= swift
XFER_BINARY ?=

bindir := $(DESTDIR)$(PREFIX)/bin
man1dir := $(DESTDIR)$(PREFIX)/share/man/man1
man7dir := $(DESTDIR)$(PREFIX)/share/man/man7
bashdir := $(DESTDIR)$(PREFIX)/share/bash-completion/completions
zshdir := $(DESTDIR)$(PREFIX)/share/zsh/site-functions
fishdir := $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d

# Everything install puts in place, and so everything uninstall removes.
installed := $(bindir)/xfer $(man1dir)/xfer.1 $(man7dir)/xfer-protocol.7 \
	$(bashdir)/xfer $(zshdir)/_xfer $(fishdir)/xfer.fish

# Where the binary and completions are staged before install copies them.
STAGE ?= .build/install
stage := $(STAGE)

.PHONY: all build install uninstall clean-stage

all: build

# The stripped binary and the completions it generates, staged in .build/install.
build:
ifeq ($(XFER_BINARY),)
	$(SWIFT) build -c release --static-swift-stdlib --product xfer
	mkdir -p $(stage)
	cp "$$($(SWIFT) build -c release --static-swift-stdlib --show-bin-path)/xfer" $(stage)/xfer
else
	mkdir -p $(stage)
	cp "$(XFER_BINARY)" $(stage)/xfer
endif
	strip $(stage)/xfer
	$(stage)/xfer --generate-completion-script bash > $(stage)/xfer.bash
	$(stage)/xfer --generate-completion-script zsh > $(stage)/_xfer
	$(stage)/xfer --generate-completion-script fish > $(stage)/xfer.fish

install: build
	install -d "$(bindir)" "$(man1dir)" "$(man7dir)" "$(bashdir)" "$(zshdir)" "$(fishdir)"
	install -m 755 $(stage)/xfer "$(bindir)/xfer"
	install -m 644 man/xfer.1 "$(man1dir)/xfer.1"
	install -m 644 man/xfer-protocol.7 "$(man7dir)/xfer-protocol.7"
	install -m 644 $(stage)/xfer.bash "$(bashdir)/xfer"
	install -m 644 $(stage)/_xfer "$(zshdir)/_xfer"
	install -m 644 $(stage)/xfer.fish "$(fishdir)/xfer.fish"
	@echo "installed: $(installed)"

uninstall:
	rm -f $(foreach file,$(installed),"$(file)")
	@echo "removed: $(installed)"

clean-stage:
	rm -rf $(stage)
