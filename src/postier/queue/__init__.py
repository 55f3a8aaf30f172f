"""postier.queue: the outbound queue runner, MX selection, SMTP client and DSNs.

``QueueRunner(store, settings, resolver, signer=None, deliver_bounce=None)`` delivers what
the SMTP server enqueued; ``SqliteQueue`` (postier.store.sqlite.queue) serves
``postier queue list|show|retry|delete|flush``.
"""

from postier.queue.dsn import Dsn
from postier.queue.runner import BounceDeliverer, QueueRunner, Signer
from postier.queue.settings import QueueSettings

__all__ = ["BounceDeliverer", "Dsn", "QueueRunner", "QueueSettings", "Signer"]
