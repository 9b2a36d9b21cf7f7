#!/usr/bin/env python3
"""Man pages xlvsd(8) and xlvsadm(8) from the programs' own --help (one source for both).

    man.py PROGRAM HELP_TEXT_FILE VERSION > PROGRAM.8
"""
import re
import sys

prog, help_file, version = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(help_file).read()


def esc(s):
    s = s.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", s, flags=re.M)


out = [f'.TH {prog.upper()} 8 "2026-12-06" "xlvs {version}" "System Administration"']
if prog == "xlvsd":
    out += [
        ".SH NAME", "xlvsd \\- the xlvs Linux Virtual Server director daemon",
        ".SH SYNOPSIS", ".B xlvsd", "\\fB\\-\\-iface\\fR \\fIIF\\fR ... [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        esc("xlvsd forwards the traffic of Linux Virtual Server services in userspace. An XDP "
            "program on each interface it drives steers the frames of virtual services "
            "(VIP:port) and the replies of LVS-NAT realservers into AF_XDP sockets; everything "
            "else reaches the kernel as usual. Worker threads, one per RX queue, schedule new "
            "connections as IPVS does (rr, wrr, lc, wlc, sed, nq, sh, mh), keep IPVS's "
            "connection table and TCP states, and rewrite frames for LVS-NAT or LVS-DR. "
            "xlvsd is administered with xlvsadm(8), in ipvsadm's syntax, over its control "
            "socket; it syncs its connections with a peer director in the Linux IPVS sync "
            "format, and follows keepalived's VRRP state in a director pair."),
        ".SH OPTIONS",
    ]
    # clap's long help: "  -x, --name <V>" lines, then indented description lines.
    body = text.split("Options:", 1)[1] if "Options:" in text else text
    opt, desc = None, []

    def flush():
        if opt:
            out.append(".TP")
            out.append("\\fB" + esc(opt).replace(" <", "\\fR <").replace("> ", ">") + "\\fR"
                       if " <" in opt else "\\fB" + esc(opt) + "\\fR")
            out.append(esc(" ".join(d.strip() for d in desc if d.strip())))

    for line in body.split("\n"):
        if re.match(r"^\s{2,6}-", line):
            flush()
            opt, desc = line.strip(), []
        elif line.strip():
            desc.append(line)
    flush()
    out += [
        ".SH SIGNALS",
        ".TP", ".B SIGHUP", esc("Re-read --rules and --keepalived-conf and apply only what changed "
                                "(systemctl reload xlvsd)."),
        ".TP", ".BR SIGTERM \", \" SIGINT", esc("Stop: the sync master sends what it holds, the "
                                                  "XDP program is detached."),
        ".SH FILES",
        ".TP", ".I /etc/default/xlvs", esc("XLVSD_OPTS, the options xlvsd.service starts xlvsd with."),
        ".TP", ".I /etc/xlvs/rules", esc("The rules, in ipvsadm -S -n format."),
        ".TP", ".I /run/xlvs/xlvsd.sock", esc("The control socket xlvsadm talks to."),
        ".TP", ".I /sys/fs/bpf/xlvs", esc("The pinned XDP links (--pin-dir)."),
        ".TP", ".I /usr/share/doc/xlvs/keepalived", esc("keepalived.conf examples for director pairs."),
        ".SH SEE ALSO", "xlvsadm(8), ipvsadm(8), keepalived(8), keepalived.conf(5)",
    ]
else:
    out += [
        ".SH NAME", "xlvsadm \\- administer the xlvs director, in ipvsadm's syntax",
        ".SH SYNOPSIS", ".B xlvsadm", "[\\fB\\-\\-control\\fR \\fISOCKET\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        esc("xlvsadm sets up, maintains and inspects the virtual server table of a running "
            "xlvsd(8), with the commands, options, output and exit codes of ipvsadm(8). It "
            "parses its command line itself (help, version and syntax errors need no daemon) "
            "and sends xlvsd a typed request over the control socket (default "
            "/run/xlvs/xlvsd.sock, or $XLVS_CONTROL)."),
        ".SH COMMANDS AND OPTIONS",
        "The text of \\fBxlvsadm \\-\\-help\\fR:",
        ".PP", ".nf",
        esc(text.rstrip("\n")),
        ".fi",
        ".SH XLVS COMMANDS",
        ".TP", "\\fB\\-\\-vrrp\\-notify\\fR [\\fIINSTANCE\\fR|\\fIGROUP\\fR \\fINAME\\fR] \\fISTATE\\fR [\\fIPRIORITY\\fR]",
        esc("keepalived's notify hook: records the VRRP state and sets the sync daemons' roles."),
        ".TP", "\\fB\\-\\-check\\fR [\\fB\\-\\-watch\\fR \\fIMS\\fR]",
        esc("keepalived's track script: fails when xlvsd is gone, wedged, has lost a worker, or "
            "still pulls its peer's table while not MASTER; --watch keeps checking every 50 ms "
            "for MS milliseconds."),
        ".TP", "\\fB\\-\\-resync\\fR", esc("Pull the peer directors' connection tables now."),
        ".SH EXIT STATUS", esc("0 on success, 2 for a usage error, 255 when xlvsd refuses the "
                               "command (as ipvsadm)."),
        ".SH SEE ALSO", "xlvsd(8), ipvsadm(8), keepalived(8)",
    ]
print("\n".join(out))
