#!/usr/bin/perl
# The client: talks to the server through the Unix socket on the shared named volume every
# half second, and logs `uds_ok` on each real round trip.
use strict;
use warnings;
use IO::Socket::UNIX;

$| = 1;
my $path = $ENV{SOCK} // '/run/sock/app.sock';
while (1) {
    my $s = IO::Socket::UNIX->new(Peer => $path);
    if ($s) {
        print $s "ping\n";
        my $reply = <$s> // '';
        print $reply =~ /^pong/ ? "uds_ok\n" : "client: unexpected reply\n";
        close $s;
    } else {
        print "client: cannot reach $path: $!\n";
    }
    select(undef, undef, undef, 0.5);
}
