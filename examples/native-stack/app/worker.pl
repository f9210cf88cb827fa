#!/usr/bin/perl
# The worker: reaches the server by its service name over TCP, as it would under compose,
# every half second, and logs `server_ok` on each answer.
use strict;
use warnings;
use IO::Socket::INET;

$| = 1;
my $to = $ENV{SERVER} // 'server:7777';
while (1) {
    my $s = IO::Socket::INET->new(PeerAddr => $to, Timeout => 2);
    if ($s) {
        print $s "ping\n";
        my $reply = <$s> // '';
        print $reply =~ /^pong/ ? "server_ok via $to\n" : "worker: unexpected reply from $to\n";
        close $s;
    } else {
        print "worker: cannot reach $to: $!\n";
    }
    select(undef, undef, undef, 0.5);
}
