#!/usr/bin/perl
# The library target-side Perl tools load with "use AutoExecUtils;" (the runner uploads this
# directory as <run dir>/lib; tools add "$FindBin::Bin/../lib" to @INC). Outputs go to
# output.json in the tool's directory, where the runner fetches them. Needs only core Perl
# modules; JSON (Debian: libjson-perl) when the target has it, else JSON::PP (core Perl).
use strict;
use warnings;

package AutoExecUtils;

use FindBin;
use Encode qw(decode encode);
use IO::File;
use POSIX qw(uname);

my $JSON_CLASS = eval { require JSON; 'JSON' } || do { require JSON::PP; 'JSON::PP' };

# Unbuffered output (lines reach the runner as they are printed), a sane umask, a masked
# command line and $OUTPUT_PATH pointing at the tool's output.json.
sub setEnv {
    $| = 1;
    umask(022);
    hidePwdInCmdLine();
    $ENV{OUTPUT_PATH} = "$FindBin::Bin/output.json";
}

# What "ps" shows for this process: values of password/account options and "password" fields
# of JSON arguments become ******.
sub hidePwdInCmdLine {
    my @shown = ($0);
    for ( my $i = 0 ; $i <= $#ARGV ; $i++ ) {
        my $arg = $ARGV[$i];
        if ( $arg =~ /^-+\w*(?:pass|pwd|account)\w*$/i and $i < $#ARGV ) {
            push( @shown, $arg, '******' );
            $i++;
            next;
        }
        $arg =~ s/("password"\s*:\s*)".*?"/$1"******"/ig;
        push( @shown, $arg );
    }
    $0 = join( ' ', @shown );
}

sub getFileContent {
    my ($filePath) = @_;
    my $fh = IO::File->new( $filePath, '<' );
    if ( not defined($fh) ) {
        print("WARN: Open file $filePath failed $!\n");
        return undef;
    }
    local $/;
    my $content = <$fh>;
    $fh->close();
    return $content;
}

# A random string of $len letters and digits (no look-alikes such as 0/O, l/1).
sub randString($) {
    my ($len) = @_;
    my @chars = ( 1 .. 9, 'A' .. 'H', 'J', 'K', 'M' .. 'Z', 'a' .. 'k', 'm', 'n', 'p' .. 'z' );
    return join( '', map { $chars[ int( rand( scalar(@chars) ) ) ] } 1 .. $len );
}

# The charset of the target's shell: the code page on Windows, else the LANG suffix (utf-8 without one).
sub getShellEncoding {
    my $osType = (uname())[0];
    if ( $osType =~ /Windows/i ) {
        my $encoding = 'GBK';
        eval q{
            require Win32::API;
            if ( Win32::API->Import( 'kernel32', 'int GetACP()' ) ) {
                $encoding = 'cp' . GetACP();
            }
        };
        return $encoding;
    }
    my $lang = $ENV{LANG};
    return ( defined($lang) and $lang =~ /\.([^.\s]+)\s*$/ ) ? $1 : 'utf-8';
}

# Text in the shell's charset (or UTF-16LE) re-encoded as UTF-8, line by line; a line that is
# valid UTF-8 already, or does not round-trip through a candidate charset, stays as it is.
sub convertTxtToUtf8 {
    my ($data) = @_;
    my @candidates = grep { defined(Encode::find_encoding($_)) } ( getShellEncoding(), 'UTF-16LE' );
    my @out;
    foreach my $line ( split( /\n/, $data, -1 ) ) {
        my $converted = $line;
        if ( not eval { decode( 'UTF-8', "$line", Encode::FB_CROAK ); 1 } ) {
            foreach my $enc (@candidates) {
                my $text = eval { decode( $enc, "$line", Encode::FB_CROAK ) };
                next if not defined($text);
                if ( encode( $enc, $text ) eq $line ) {
                    $converted = encode( 'UTF-8', $text );
                    last;
                }
            }
        }
        push( @out, $converted );
    }
    return join( "\n", @out );
}

# Write the outputs (a hash) to the tool's output.json; with $conv2Utf8 == 1 text in the
# shell's charset is converted to UTF-8 first.
sub saveOutput {
    my ( $outputData, $conv2Utf8 ) = @_;
    my $outputPath = "$FindBin::Bin/output.json";
    my $text = $JSON_CLASS->new->utf8(0)->pretty(1)->encode($outputData);
    $text = convertTxtToUtf8($text) if ( defined($conv2Utf8) and $conv2Utf8 == 1 );
    my $fh = IO::File->new( "$outputPath.tmp", '>' ) or die("ERROR: Can not open output file:$outputPath to write.\n");
    print $fh ($text);
    $fh->close() and rename( "$outputPath.tmp", $outputPath ) or die("ERROR: Can not write output file:$outputPath, $!\n");
}

# Evaluate a check such as "[status] == 'ok' and [count] > 1" against one row: [name] stands for
# the row's field; == and != against a quoted string compare as strings.
sub evalDsl {
    my ( $data, $checkDsl ) = @_;
    $checkDsl =~ s/\[\s*([^\]]+?)\s*\]/\$data->{'$1'}/g;
    $checkDsl =~ s/==\s*(['"])/eq $1/g;
    $checkDsl =~ s/!=\s*(['"])/ne $1/g;
    no warnings;
    return eval($checkDsl);
}

# Print an object (or array of objects) as a table, keep rows matching $filter, mark each with
# FINE/ERROR by $checkDsl. Returns 0 when all fine, 1 when a check failed, 2 when no row matched.
sub JsonToTableCheck {
    my ( $obj, $fieldNames, $filter, $checkDsl ) = @_;
    my $header = {};
    my @rows;
    foreach my $item ( ref($obj) eq 'ARRAY' ? @$obj : ($obj) ) {
        push( @rows, @{ hashToTable( $item, undef, $header ) } ) if ref($item) eq 'HASH';
    }
    $fieldNames = [ sort( keys(%$header) ) ] if not defined($fieldNames);
    print( join( '', map { "$_\t" } @$fieldNames ), "\n" );

    my ( $errorCode, $matched ) = ( 0, 0 );
    foreach my $row (@rows) {
        next if defined($filter) and not evalDsl( $row, $filter );
        $matched = 1;
        if ( defined($checkDsl) ) {
            if ( evalDsl( $row, $checkDsl ) ) {
                print('FINE: ');
            }
            else {
                $errorCode = 1;
                print('ERROR: ');
            }
        }
        print( join( '', map { ( defined( $row->{$_} ) ? $row->{$_} : '' ) . "\t" } @$fieldNames ), "\n" );
    }
    if ( not $matched ) {
        print( defined($filter) ? "ERROR: No data matched filter:$filter\n" : "ERROR: No data return from api.\n" );
        $errorCode = 2;
    }
    return $errorCode;
}

# Flatten one object into rows: scalar fields as "parent.key" columns (recorded in $header);
# a nested object adds its columns; an array of objects yields one row per element.
sub hashToTable {
    my ( $obj, $parentPath, $header ) = @_;
    my %base;
    my @nested;
    foreach my $key ( sort( keys(%$obj) ) ) {
        my $path = defined($parentPath) ? "$parentPath.$key" : $key;
        my $val = $obj->{$key};
        if ( ref($val) eq 'HASH' or ref($val) eq 'ARRAY' ) {
            push( @nested, [ $path, $val ] );
        }
        else {
            $header->{$path} = 1;
            $base{$path} = $val;
        }
    }
    my @rows = ( {%base} );
    foreach my $entry (@nested) {
        my ( $path, $val ) = @$entry;
        my @children;
        foreach my $child ( ref($val) eq 'ARRAY' ? @$val : ($val) ) {
            push( @children, @{ hashToTable( $child, $path, $header ) } ) if ref($child) eq 'HASH';
        }
        next if not @children;
        @rows = map {
            my $row = $_;
            map { +{ %$row, %$_ } } @children
        } @rows;
    }
    return \@rows;
}

1;
