package backends

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/smithy-go/logging"
)

// SDKLogger routes the AWS SDK's own log lines (such as its notice that it
// falls back to IMDSv1) through log, so that they follow --log-format and
// -q instead of going to stderr in the SDK's format. The SDK's warnings
// are logged at info level: what matters to the caller comes back as the
// call's error. A nil log discards them.
func SDKLogger(log *slog.Logger) logging.Logger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return sdkLogger{log}
}

type sdkLogger struct{ log *slog.Logger }

var _ logging.Logger = sdkLogger{}

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	level := slog.LevelDebug
	if c == logging.Warn {
		level = slog.LevelInfo
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, v...), "from", "aws-sdk")
}
