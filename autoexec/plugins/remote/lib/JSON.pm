package JSON;

# Stand-in for the CPAN JSON module on target hosts that lack it: target-side tools say "use JSON;"
# after putting this lib directory first in @INC, and minimal hosts ship only core Perl. It keeps
# JSON's interface (to_json/from_json/encode_json/decode_json, JSON->new with the usual option
# methods, JSON::true/false/null) and does the work with JSON::PP, which is core Perl since 5.14.
# Written for autoexec.
use strict;
use warnings;
use JSON::PP ();

our @ISA     = ('JSON::PP');
our $VERSION = '4.10';    # the JSON release whose interface this follows
our @EXPORT  = qw(from_json to_json jsonToObj objToJson encode_json decode_json);

sub import {
    my ( $class, @args ) = @_;
    my @names = grep { !/^-/ } @args;    # -support_by_pp, -convert_blessed_universally: nothing to do
    @names = @EXPORT if not @names;
    my $caller = caller;
    no strict 'refs';
    foreach my $name (@names) {
        next if not defined( &{"JSON::$name"} );
        *{"${caller}::$name"} = \&{"JSON::$name"};
    }
}

sub _configured {
    my ($opt) = @_;
    my $json = JSON->new;
    if ( ref($opt) eq 'HASH' ) {
        while ( my ( $method, $value ) = each(%$opt) ) {
            $json->$method($value);
        }
    }
    return $json;
}

# Perl data to JSON text; characters, not UTF-8 bytes, unless {utf8 => 1}.
sub to_json {
    my ( $data, $opt ) = @_;
    return _configured($opt)->encode($data);
}

sub from_json {
    my ( $text, $opt ) = @_;
    return _configured($opt)->decode($text);
}

sub encode_json { return JSON::PP::encode_json( $_[0] ); }
sub decode_json { return JSON::PP::decode_json( $_[0] ); }
sub objToJson   { return to_json(@_); }
sub jsonToObj   { return from_json(@_); }

sub true    { return $JSON::PP::true; }
sub false   { return $JSON::PP::false; }
sub null    { return undef; }
sub is_bool { return JSON::PP::is_bool( $_[-1] ); }

sub backend    { return 'JSON::PP'; }
sub is_xs      { return 0; }
sub is_pp      { return 1; }

1;
