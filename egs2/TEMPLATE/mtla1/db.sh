# Where the corpora live on this machine; each recipe's local/data.sh reads its variable
# and says what to download when it is empty or wrong.
MUSTC=${MUSTC:-}
AMI=${AMI:-}
SLURP=${SLURP:-}
XSUM=${XSUM:-}
