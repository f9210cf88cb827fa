#!/usr/bin/perl
# The quickstart's web server: serves the files of DIR on PORT (GET and HEAD). Core Perl
# only, so it runs as it is wherever perl-base is (every Debian and Ubuntu machine).
use strict;
use warnings;
use IO::Socket::INET;

my ($port, $root) = @ARGV;
die "usage: server.pl PORT DIR\n" unless defined $root;
my $server = IO::Socket::INET->new(
    LocalAddr => "0.0.0.0",
    LocalPort => $port,
    Proto     => "tcp",
    Listen    => 16,
    ReuseAddr => 1,
) or die "server.pl: cannot listen on port $port: $!\n";
$SIG{PIPE} = "IGNORE";
$| = 1;
print "serving $root on port $port\n";

my %types = (html => "text/html", css => "text/css", txt => "text/plain", json => "application/json");

sub answer {
    my ($c, $status, $type, $body, $head) = @_;
    print $c "HTTP/1.0 $status\r\nContent-Type: $type\r\nContent-Length: "
      . length($body) . "\r\nConnection: close\r\n\r\n";
    print $c $body unless $head;
}

while (my $c = $server->accept) {
    # A client that sends nothing (a TCP healthcheck) must not hold the server up.
    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 5;
        my $request = <$c>;
        if (defined $request) {
            while (my $h = <$c>) { last if $h =~ /^\r?\n$/ }
            my ($method, $path) = $request =~ m{^(\w+) (/[^ ?#]*)};
            if (!defined $method || ($method ne "GET" && $method ne "HEAD")) {
                answer($c, "405 Method Not Allowed", "text/plain", "GET or HEAD only\n");
            } elsif ($path =~ m{(^|/)\.\.(/|$)}) {
                answer($c, "400 Bad Request", "text/plain", "bad path\n");
            } else {
                $path .= "index.html" if $path =~ m{/$};
                my $file = "$root$path";
                my ($ext) = $path =~ /\.(\w+)$/;
                if (-f $file && open(my $f, "<:raw", $file)) {
                    local $/;
                    my $body = <$f> // "";
                    close $f;
                    answer($c, "200 OK", $types{$ext // ""} // "application/octet-stream",
                        $body, $method eq "HEAD");
                } else {
                    answer($c, "404 Not Found", "text/plain", "not found\n", $method eq "HEAD");
                }
            }
            print "$method $path\n" if defined $method;
        }
        alarm 0;
    };
    close $c;
}
