#!/usr/bin/perl
# The library runner-side Perl tools load with "use AutoExecUtils;" (found through PERL5LIB or
# "use lib "$FindBin::Bin/../lib""). It offers the functions tools written for neatlogic call, on
# autoexec's job contract: outputs to $OUTPUT_PATH, live data to $LIVEDATA_PATH, the node's
# accumulated outputs in $NODE_OUTPUT_PATH, nodes files next to $AUTOEXEC_NODES_PATH and the job
# socket $AUTOEXEC_JOB_SOCK (JSON datagrams). Needs only core Perl modules plus JSON (Debian:
# libjson-perl); JSON::PP, part of core Perl, is used when JSON is missing.
use strict;
use warnings;

package AutoExecUtils;

use Fcntl qw(:flock);
use File::Basename qw(dirname);
use File::Path qw(mkpath);
use File::Temp qw(tempfile);
use IO::File;
use IO::Select;
use IO::Socket::UNIX;
use POSIX qw(mkfifo);
use Socket qw(SOCK_DGRAM);

my $JSON_CLASS = eval { require JSON; 'JSON' } || do { require JSON::PP; 'JSON::PP' };
my $READ_TIMEOUT = 86400;    # how long doInteract waits for an answer
my $MAX_DATAGRAM = 8192;     # the job socket reads at most this much per message

sub _toJson {
    my ( $data, $pretty ) = @_;
    return $JSON_CLASS->new->utf8(0)->allow_nonref(1)->pretty( $pretty ? 1 : 0 )->encode($data);
}

sub _fromJson {
    my ($text) = @_;
    return $JSON_CLASS->new->utf8(0)->allow_nonref(1)->decode($text);
}

# Runner-side tools need no preparation beyond a sane umask and a masked command line.
sub setEnv {
    umask(022);
    hidePwdInCmdLine();
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

# Whole content of a file, undef (with a WARN) when it cannot be read.
sub getFileContent {
    my ($filePath) = @_;
    my $fh = IO::File->new( $filePath, '<' );
    if ( not defined($fh) ) {
        print("WARN: File:$filePath not found or can not be readed.\n");
        return undef;
    }
    local $/;
    my $content = <$fh>;
    $fh->close();
    return $content;
}

sub _saveJson {
    my ( $path, $data, $what, $var ) = @_;
    if ( not defined($path) or $path eq '' ) {
        print("WARN: Could not save $what file, because of environ $var not defined.\n");
        return;
    }
    print("INFO: Try to save $what to $path.\n");
    my $dir = dirname($path);
    mkpath($dir) if ( $dir ne '' and not -d $dir );
    my ( $fh, $tmp ) = tempfile( '.autoexec-XXXXXX', DIR => $dir eq '' ? '.' : $dir );
    print $fh ( _toJson( $data, 1 ) );
    if ( not close($fh) or not rename( $tmp, $path ) ) {
        my $err = $!;
        unlink($tmp);
        die("ERROR: Can not write $what file:$path, $err\n");
    }
}

sub saveOutput {
    my ($outputData) = @_;
    _saveJson( $ENV{OUTPUT_PATH}, $outputData, 'output', 'OUTPUT_PATH' );
}

sub saveLiveData {
    my ($liveData) = @_;
    _saveJson( $ENV{LIVEDATA_PATH}, $liveData, 'live data', 'LIVEDATA_PATH' );
}

sub getMyNode {
    my $text = $ENV{AUTOEXEC_NODE};
    return ( defined($text) and $text ne '' ) ? _fromJson($text) : undef;
}

sub _jsonLines {
    my ($path) = @_;
    my @items;
    my $fh = IO::File->new( $path, '<' );
    return \@items if not defined($fh);
    while ( my $line = $fh->getline() ) {
        next if $line !~ /\S/;
        push( @items, _fromJson($line) );
    }
    $fh->close();
    return \@items;
}

# The node with this resourceId in the phase's nodes file (password included), {} when absent.
sub getNode {
    my ($resourceId) = @_;
    my $path = $ENV{AUTOEXEC_NODES_PATH};
    return {} if not defined($path);
    foreach my $node ( @{ _jsonLines($path) } ) {
        if ( defined( $node->{resourceId} ) and "$node->{resourceId}" eq "$resourceId" ) {
            return $node;
        }
    }
    return {};
}

# The named pipe a waiting tool reads the console's answer from.
sub getNodePipeFile {
    my ( $jobPath, $phaseName, $nodeInfo ) = @_;
    return "$jobPath/log/$phaseName/$nodeInfo->{host}-$nodeInfo->{port}-$nodeInfo->{resourceId}.txt.run.pipe";
}

sub loadNodeOutput {
    my $path = $ENV{NODE_OUTPUT_PATH};
    if ( not defined($path) or not -f $path ) {
        print( "WARN: Output file ", ( defined($path) ? $path : '' ), " not exist.\n" );
        return {};
    }
    my $fh = IO::File->new( $path, '<' );
    return {} if not defined($fh);
    flock( $fh, LOCK_SH );
    local $/;
    my $content = <$fh>;
    flock( $fh, LOCK_UN );
    $fh->close();
    return ( defined($content) and $content =~ /\S/ ) ? _fromJson($content) : {};
}

sub getOpPreOutput {
    my $opId = $ENV{OPERATION_ID};
    return loadNodeOutput()->{ defined($opId) ? $opId : '' };
}

sub _nodesFile {
    my ( $phaseName, $groupNo ) = @_;
    my $dir = dirname( $ENV{AUTOEXEC_NODES_PATH} );
    if ( defined($phaseName) and $phaseName ne '' and -f "$dir/nodes-ph-$phaseName.json" ) {
        return "$dir/nodes-ph-$phaseName.json";
    }
    if ( defined($groupNo) and $groupNo ne '' and -f "$dir/nodes-gp-$groupNo.json" ) {
        return "$dir/nodes-gp-$groupNo.json";
    }
    return "$dir/nodes.json";
}

# Nodes of the phase's file, else the group's, else the job's nodes.json; header skipped,
# passwords removed.
sub getNodesArray {
    my ( $phaseName, $groupNo ) = @_;
    return [] if not defined( $ENV{AUTOEXEC_NODES_PATH} );
    my $items = _jsonLines( _nodesFile( $phaseName, $groupNo ) );
    shift(@$items);
    delete( $_->{password} ) foreach (@$items);
    return $items;
}

sub getNodes {
    my ( $phaseName, $groupNo ) = @_;
    my %map = map { $_->{resourceId} => $_ } @{ getNodesArray( $phaseName, $groupNo ) };
    return \%map;
}

sub _sendToJob {
    my ($request) = @_;
    my $path = $ENV{AUTOEXEC_JOB_SOCK};
    die("socket file " . ( defined($path) ? $path : '' ) . " not exist\n") if not defined($path) or not -e $path;
    my $data = $JSON_CLASS->new->utf8(1)->encode($request);
    die( "request of " . length($data) . " bytes exceeds the job socket limit of $MAX_DATAGRAM bytes\n" )
        if length($data) > $MAX_DATAGRAM;
    my $client = IO::Socket::UNIX->new( Peer => $path, Type => SOCK_DGRAM, Timeout => 10 )
        or die("connect $path failed, $!\n");
    defined( $client->send($data) ) or die("send to $path failed, $!\n");
    $client->close();
}

# Tell the running job this node waits for a human (waitInput; the console shows message and
# options), or with clean => 1 that the answer came (back to running). A failure is a WARN.
sub informNodeWaitInput {
    my (%args) = @_;
    my $clean = ( defined( $args{clean} ) and $args{clean} == 1 ) ? 1 : undef;
    my $status = $clean ? 'running' : 'waitInput';
    my $request = {
        action     => 'informNodeWaitInput',
        phaseName  => $args{phaseName},
        resourceId => $args{resourceId},
        clean      => $clean,
        interact   => undef
    };
    if ( defined( $args{pipeFile} ) and ref( $args{options} ) eq 'ARRAY' ) {
        $request->{interact} = {
            title    => $args{title},
            opType   => defined( $args{opType} ) ? $args{opType} : 'button',
            message  => defined( $args{message} ) ? $args{message} : 'Please select',
            options  => $args{options},
            role     => $args{role},
            pipeFile => $args{pipeFile}
        };
    }
    eval { _sendToJob($request); };
    if ($@) {
        my $err = $@;
        $err =~ s/\s+$//;
        print("WARN: Inform runner update status to $status failed, $err\n");
    }
    else {
        print("INFO: Inform runner update status to $status success.\n");
    }
    return;
}

# Set job variables for the ops that start after this one (and record them unless
# $onlyInProcess). Dies when the job cannot be told.
sub setJobEnv {
    my ( $onlyInProcess, $items ) = @_;
    return if not defined($items) or not %$items;
    eval { _sendToJob( { action => 'setEnv', onlyInProcess => $onlyInProcess, items => $items } ); };
    die("ERROR: Set job enviroment failed, $@") if $@;
    return;
}

# Ask a human through the console and wait for the answer on the named pipe (or STDIN).
# The console writes "[userId]# value" lines; a value outside the options is refused and asked
# again. Returns ($userId, $value); $value is undef when the wait was aborted ("force-exit").
sub doInteract {
    my (%args) = @_;
    my $pipeFile = $args{pipeFile};
    my $opType   = defined( $args{opType} ) ? $args{opType} : 'button';
    my %allowed  = map { $_ => 1 } @{ $args{options} || [] };
    my $descFile = "$pipeFile.json";

    unlink($pipeFile) if -e $pipeFile;
    my $desc = IO::File->new( $descFile, '>' ) or die("ERROR: Create file $descFile failed $!\n");
    print $desc ( _toJson( \%args, 0 ) );
    $desc->close();
    if ( not mkfifo( $pipeFile, 0700 ) ) {
        unlink($descFile);
        die("ERROR: Create pipe $pipeFile failed $!\n");
    }

    my ( $userId, $value );
    my $ok = eval {
        my $pipe = IO::File->new( $pipeFile, '+<' ) or die("ERROR: Can not get input $!\n");
        my $select = IO::Select->new( $pipe, \*STDIN );
        my %pending;    # unterminated input per handle: lines are read unbuffered, so select sees the rest
        my $got = 0;
        while ( not $got ) {
            print("[Wait Interact]$args{message}\n");
            STDOUT->flush();
            my @ready = $select->can_read($READ_TIMEOUT);
            if ( not @ready ) {
                print("\nWARN: Wait user input timeout or execution aborted.\n");
                die("ERROR: Read from input aborted.\n");
            }
            my @lines;
            foreach my $handle (@ready) {
                my $n = sysread( $handle, my $chunk, 4096 );
                if ( not $n ) {
                    push( @lines, 'force-exit' );    # STDIN closed: the job is being stopped
                    next;
                }
                $pending{ fileno($handle) } .= $chunk;
                while ( $pending{ fileno($handle) } =~ s/^([^\n]*)\n// ) {
                    push( @lines, $1 );
                }
            }
            foreach my $line (@lines) {
                $value = $line;
                $value =~ s/^\s+|\s+$//g;
                if ( $value =~ /^\[(.*?)\]# (.*)$/ ) {
                    ( $userId, $value ) = ( $1, $2 );
                }
                print("INFO: Get input:$value\n");
                if ( $value eq 'force-exit' or $opType eq 'input' ) {
                    $got = 1;
                }
                elsif ( $opType eq 'mselect' ) {
                    my $chosen = eval { _fromJson($value) };
                    $got = ( ref($chosen) eq 'ARRAY' and @$chosen and not grep { not $allowed{$_} } @$chosen ) ? 1 : 0;
                }
                else {
                    $got = $allowed{$value} ? 1 : 0;
                }
                last if $got;
                print("WARN: Invalid input value:$value, try again.\n");
            }
        }
        $pipe->close();
        1;
    };
    my $err = $@;
    unlink($pipeFile);
    unlink($descFile);
    die($err) if not $ok;
    undef($value) if $value eq 'force-exit';
    return ( $userId, $value );
}

# Evaluate a check such as "[status] eq 'ok' and [count] > 1" against one row: [name] stands for
# the row's field; == and != against a quoted string compare as strings.
sub evalDsl {
    my ( $data, $checkDsl ) = @_;
    $checkDsl =~ s/\[\s*([^\]]+?)\s*\]/\$data->{'$1'}/g;
    $checkDsl =~ s/==\s*(['"])/eq $1/g;
    $checkDsl =~ s/!=\s*(['"])/ne $1/g;
    no warnings;
    return eval($checkDsl);
}

# Print a JSON object (or array of objects) as a table, one column per flattened field
# ("a.b" for nested objects; arrays multiply rows), keep rows matching $filter and mark each
# with FINE/ERROR by $checkDsl. Returns 0 when all fine, 1 when a check failed, 2 when no row matched.
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
