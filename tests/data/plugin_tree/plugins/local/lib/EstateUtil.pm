package EstateUtil;
# A Perl library module of the estate's own tree, read through "use lib $FindBin::Bin/../lib".
use strict;
use FindBin;
use Cwd;

sub serverBaseurl {
    # The tree's conf/config.ini, three levels above the tool's real directory.
    my $confFile = Cwd::abs_path("$FindBin::Bin/../../../conf/config.ini");
    my $url      = '';
    if ( defined($confFile) and open( my $fh, '<', $confFile ) ) {
        while ( my $line = <$fh> ) {
            if ( $line =~ /^\s*server\.baseurl\s*=\s*(\S+)/ ) {
                $url = $1;
            }
        }
        close($fh);
    }
    return $url;
}

1;
