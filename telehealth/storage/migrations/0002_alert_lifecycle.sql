-- Escalation of unacknowledged urgent alerts, and how the alert ended.
ALTER TABLE alerts ADD COLUMN escalated_at timestamptz;
ALTER TABLE alerts ADD COLUMN resolution text;
CREATE INDEX alerts_urgent_unacknowledged ON alerts (opened_at)
    WHERE status = 'open' AND severity = 'urgent' AND escalated_at IS NULL;
