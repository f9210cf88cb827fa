#!/usr/bin/perl
# The server: answers `ping` with `pong` on TCP (PORT) and on a Unix socket in the shared
# volume (SOCK), one connection at a time, and notes each answer in /logs/server.log.
use strict;
use warnings;
use IO::Socket::INET;
use IO::Socket::UNIX;
use IO::Select;

$| = 1;
my $port = $ENV{PORT} // 7777;
my $path = $ENV{SOCK} // '/run/sock/app.sock';
my $tcp = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 16, ReuseAddr => 1
) or die "server: tcp :$port: $!\n";
unlink $path;
my $uds = IO::Socket::UNIX->new(Local => $path, Listen => 16)
    or die "server: unix $path: $!\n";
print "server: listening on 127.0.0.1:$port and $path\n";
my $sel = IO::Select->new($tcp, $uds);
while (1) {
    for my $l ($sel->can_read) {
        my $c = $l->accept or next;
        my $line = <$c> // '';
        my $how = $l == $tcp ? 'tcp' : 'unix';
        if ($line =~ /^ping/) {
            print $c "pong\n";
            if (open my $log, '>>', '/logs/server.log') {
                print $log "answered over $how\n";
                close $log;
            }
        } else {
            print $c "what?\n";
        }
        close $c;
    }
}
